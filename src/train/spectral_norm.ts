/**
 * Spectral normalization (Miyato et al., "Spectral Normalization for GANs", 2018) of a critic's
 * convolutions, applied outside the graph: the graph receives W / sigma(W), and the gradient it
 * returns for that normalized weight is carried back to W here. sigma is estimated as PyTorch's
 * `torch.nn.utils.spectral_norm` does: one power iteration a step on W reshaped to
 * (out channels, the rest), its vector u kept between steps (and in checkpoints, so a resumed run
 * goes on exactly), u and v held constant in the gradient.
 */
import { Random } from '../degrade/random.js';

interface PowerState {
  /** Stored in float32, as checkpoints keep it. */
  u: Float32Array;
  v: Float64Array;
  sigma: number;
}

function normalizeInPlace(x: Float64Array | Float32Array): void {
  let n = 0;
  for (const e of x) n += e * e;
  n = Math.sqrt(n) + 1e-12;
  for (let i = 0; i < x.length; i++) x[i]! /= n;
}

/** v = normalize(W^T u) for W of `rows` rows, written into `v`. */
function rightVector(w: Float32Array, u: Float32Array, v: Float64Array): void {
  const rows = u.length;
  const cols = v.length;
  v.fill(0);
  for (let r = 0; r < rows; r++) {
    const ur = u[r]!;
    for (let c = 0, o = r * cols; c < cols; c++) v[c]! += w[o + c]! * ur;
  }
  normalizeInPlace(v);
}

/** W v, one entry per row of W. */
function timesV(w: Float32Array, v: Float64Array, rows: number): Float64Array {
  const cols = v.length;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0, o = r * cols; c < cols; c++) acc += w[o + c]! * v[c]!;
    out[r] = acc;
  }
  return out;
}

export class SpectralNorm {
  private readonly state = new Map<string, PowerState>();

  /** Which parameters are normalized: the weights of convolutions and linear layers (biases never). */
  static applies(key: string, shape: number[]): boolean {
    return key.endsWith('.weight') && shape.length >= 2;
  }

  constructor(private readonly seed: string) {}

  /** The power iteration's u of each normalized weight, for a checkpoint. */
  vectors(): Map<string, Float32Array> {
    return new Map([...this.state].map(([k, s]) => [k, s.u]));
  }

  /** Restores a checkpoint's u for `key`; its next `normalize` makes one iteration from it. */
  restore(key: string, u: Float32Array): void {
    this.state.set(key, { u: Float32Array.from(u), v: new Float64Array(0), sigma: 1 });
  }

  /**
   * The weights as the graphs receive them: W / sigma(W) for each weight it applies to (see
   * `normalize`), the rest as they are.
   */
  weights(params: Map<string, Float32Array>, shapeOf: (key: string) => number[], advance: boolean): Map<string, Float32Array> {
    return new Map([...params].map(([k, w]) => {
      const shape = shapeOf(k);
      return [k, SpectralNorm.applies(k, shape) ? this.normalize(k, w, shape, advance) : w] as const;
    }));
  }

  /** The gradients with respect to the raw weights from those with respect to what `weights` gave (see `gradient`). */
  gradients(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, shapeOf: (key: string) => number[]): Map<string, Float32Array> {
    return new Map([...grads].map(([k, g]) => [k, SpectralNorm.applies(k, shapeOf(k)) ? this.gradient(k, params.get(k)!, g) : g] as const));
  }

  /**
   * One power-iteration step on `w` (rows = shape[0]; none unless `advance`), then W / sigma. The
   * first call for a key runs 20 iterations from a seeded random u, so the first step starts from a
   * converged estimate. Without `advance`, u stays as it is and v, sigma follow from it.
   */
  normalize(key: string, w: Float32Array, shape: number[], advance = true): Float32Array {
    const rows = shape[0]!;
    const cols = w.length / rows;
    let iterations = advance ? 1 : 0;
    let s = this.state.get(key);
    if (!s) {
      const rng = new Random(`${this.seed}:${key}`);
      const u = Float32Array.from({ length: rows }, () => rng.normal());
      normalizeInPlace(u);
      s = { u, v: new Float64Array(cols), sigma: 1 };
      this.state.set(key, s);
      iterations = 20;
    }
    if (s.v.length !== cols) s.v = new Float64Array(cols);
    for (let it = 0; it < iterations; it++) {
      rightVector(w, s.u, s.v);
      // u = normalize(W v)
      const u = timesV(w, s.v, rows);
      normalizeInPlace(u);
      s.u.set(u);
    }
    if (iterations === 0) rightVector(w, s.u, s.v);
    const wv = timesV(w, s.v, rows);
    let sigma = 0;
    for (let r = 0; r < rows; r++) sigma += s.u[r]! * wv[r]!;
    s.sigma = sigma;
    const out = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) out[i] = w[i]! / sigma;
    return out;
  }

  /**
   * The gradient with respect to W from the gradient G with respect to W / sigma (with the u, v and
   * sigma of this step's `normalize`): (G - <G, W / sigma> u v^T) / sigma.
   */
  gradient(key: string, w: Float32Array, g: Float32Array): Float32Array {
    const s = this.state.get(key);
    if (!s) throw new Error(`SpectralNorm: '${key}' was never normalized`);
    const rows = s.u.length;
    const cols = s.v.length;
    let inner = 0;
    for (let i = 0; i < w.length; i++) inner += g[i]! * w[i]!;
    inner /= s.sigma;
    const out = new Float32Array(w.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0, o = r * cols; c < cols; c++) out[o + c] = (g[o + c]! - inner * s.u[r]! * s.v[c]!) / s.sigma;
    }
    return out;
  }
}
