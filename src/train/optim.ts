/** AdamW with decoupled weight decay, global-norm gradient clipping and a warmup + decay schedule. */

export interface AdamWConfig {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** Clip the global L2 norm of all gradients to this (0 = off). */
  clipNorm: number;
  warmupSteps: number;
  schedule: 'constant' | 'cosine' | 'linear';
  totalSteps: number;
  /** Final learning rate as a fraction of `lr` for cosine/linear decay. */
  minLrRatio: number;
}

export interface AdamWState {
  step: number;
  /**
   * Steps the moments have accumulated, for bias correction: `step` itself unless the run resumed
   * from weights alone (moments started again from zero), when it counts from that resume.
   */
  momentSteps?: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export function newAdamWState(params: Map<string, Float32Array>): AdamWState {
  const zeros = () => new Map([...params].map(([k, p]) => [k, new Float32Array(p.length)]));
  return { step: 0, m: zeros(), v: zeros() };
}

/** Learning rate at (0-based) step `step`: linear warmup, then constant, cosine or linear decay. */
export function learningRate(c: AdamWConfig, step: number): number {
  if (c.warmupSteps > 0 && step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  if (c.schedule === 'constant') return c.lr;
  const span = Math.max(1, c.totalSteps - c.warmupSteps);
  const t = Math.min(1, (step - c.warmupSteps) / span);
  const floor = c.lr * c.minLrRatio;
  const shape = c.schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * t)) : 1 - t;
  return floor + (c.lr - floor) * shape;
}

export function globalNorm(grads: Map<string, Float32Array>): number {
  let s = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * One AdamW step in place on `params`. Returns the learning rate used and the gradient norm
 * before clipping. Bias-corrected moments; weight decay applied as p -= lr * wd * p.
 */
export function adamWStep(c: AdamWConfig, state: AdamWState, params: Map<string, Float32Array>, grads: Map<string, Float32Array>): { lr: number; gradNorm: number } {
  const gradNorm = globalNorm(grads);
  if (!Number.isFinite(gradNorm)) throw new Error(`gradient norm is ${gradNorm} at step ${state.step}: training diverged (lower the learning rate)`);
  const clip = c.clipNorm > 0 && gradNorm > c.clipNorm ? c.clipNorm / gradNorm : 1;
  const lr = learningRate(c, state.step);
  state.step++;
  state.momentSteps = (state.momentSteps ?? state.step - 1) + 1;
  const [b1, b2] = c.betas;
  const bc1 = 1 - b1 ** state.momentSteps;
  const bc2 = 1 - b2 ** state.momentSteps;
  for (const [k, p] of params) {
    const g = grads.get(k);
    if (!g) throw new Error(`no gradient for trainable parameter '${k}'`);
    const m = state.m.get(k)!;
    const v = state.v.get(k)!;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]! * clip;
      m[i] = b1 * m[i]! + (1 - b1) * gi;
      v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
      p[i] = p[i]! - lr * c.weightDecay * p[i]! - (lr * (m[i]! / bc1)) / (Math.sqrt(v[i]! / bc2) + c.eps);
    }
  }
  return { lr, gradNorm };
}
