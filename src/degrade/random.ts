/**
 * A small seeded pseudo-random generator for the degradation recipe: xoshiro128** (Blackman and
 * Vigna, 2018) on four 32-bit words, seeded through splitmix32 from a hash of a text key. Every
 * random choice the recipe makes comes from one of these, so the same key gives the same bytes on
 * every machine (only 32-bit integer arithmetic and IEEE double operations are involved; the
 * transcendental functions are Math.log / Math.sqrt / Math.cos, which Node computes the same way
 * on every platform it ships for).
 */

/** 32-bit FNV-1a of the UTF-8 bytes of `text`, with a different offset basis per `lane`. */
function fnv1a(text: string, lane: number): number {
  let h = (0x811c9dc5 ^ Math.imul(lane, 0x9e3779b9)) >>> 0;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** One splitmix32 step: returns [next state, output]. */
function splitmix32(state: number): [number, number] {
  const s = (state + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [s, (z ^ (z >>> 16)) >>> 0];
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** The second value of the last Box-Muller pair, not yet handed out. */
  private spareNormal: number | undefined;

  /** A generator seeded from a text key (e.g. `"0:ffhq_00000"`). */
  constructor(key: string) {
    let st = fnv1a(key, 0) ^ rotl(fnv1a(key, 1), 7);
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(st);
      st = next;
      words.push(out ^ fnv1a(key, i + 2));
    }
    if (words.every((w): boolean => w === 0)) words[0] = 1; // the all-zero state is a fixed point
    [this.s0, this.s1, this.s2, this.s3] = words as [number, number, number, number];
  }

  /** The next 32-bit output of xoshiro128**. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A double uniform in [0, 1) with 53 random bits. */
  random(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi) (lo when the range is empty). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.random();
  }

  /** An integer uniform in [0, n). */
  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** One item of `items`, with probabilities proportional to `weights` (uniform without them). */
  choice<T>(items: readonly T[], weights?: readonly number[]): T {
    if (items.length === 0) throw new Error('Random.choice: no items');
    if (!weights) return items[this.int(items.length)]!;
    const total = weights.reduce((a, b) => a + b, 0);
    let u = this.random() * total;
    for (let i = 0; i < items.length; i++) {
      u -= weights[i]!;
      if (u < 0) return items[i]!;
    }
    return items[items.length - 1]!;
  }

  /** A standard normal sample (Box-Muller; the pair's second value is kept for the next call). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const v = this.spareNormal;
      this.spareNormal = undefined;
      return v;
    }
    let u1 = this.random();
    while (u1 === 0) u1 = this.random();
    const u2 = this.random();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spareNormal = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /**
   * A Poisson sample with mean `lam` >= 0: multiplication of uniforms (Knuth) below 10, otherwise
   * the transformed rejection method with squeeze of Hormann (1993), "The transformed rejection
   * method for generating Poisson random variables" (PTRS), as numpy uses for large means.
   */
  poisson(lam: number): number {
    if (!(lam >= 0) || !Number.isFinite(lam)) throw new Error(`Random.poisson: mean must be finite and >= 0, got ${lam}`);
    if (lam === 0) return 0;
    if (lam < 10) {
      const limit = Math.exp(-lam);
      let k = 0;
      let p = this.random();
      while (p > limit) {
        k++;
        p *= this.random();
      }
      return k;
    }
    const slam = Math.sqrt(lam);
    const loglam = Math.log(lam);
    const b = 0.931 + 2.53 * slam;
    const a = -0.059 + 0.02483 * b;
    const invalpha = 1.1239 + 1.1328 / (b - 3.4);
    const vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
      const u = this.random() - 0.5;
      const v = this.random();
      const us = 0.5 - Math.abs(u);
      const k = Math.floor(((2 * a) / us + b) * u + lam + 0.43);
      if (us >= 0.07 && v <= vr) return k;
      if (k < 0 || (us < 0.013 && v > us)) continue;
      if (Math.log(v) + Math.log(invalpha) - Math.log(a / (us * us) + b) <= -lam + k * loglam - logFactorial(k)) return k;
    }
  }
}

/** ln(k!) for an integer k >= 0 (exact sum below 64, Stirling series above). */
function logFactorial(k: number): number {
  if (k < 64) {
    let s = 0;
    for (let i = 2; i <= k; i++) s += Math.log(i);
    return s;
  }
  const x = k + 1;
  const inv = 1 / x;
  const inv2 = inv * inv;
  return (x - 0.5) * Math.log(x) - x + 0.5 * Math.log(2 * Math.PI) + inv * (1 / 12 - inv2 * (1 / 360 - inv2 / 1260));
}
