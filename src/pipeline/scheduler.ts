/**
 * The only scheduler math OSDFace needs: the training noise schedule's alphas_cumprod (as
 * DDIMScheduler builds it, in float32) and x0 from the predicted noise at one timestep.
 */
import { Config } from '../models/config.js';
import { type FloatTensor, floatTensor } from '../tensor.js';

const f = Math.fround;

/** torch.linspace in float32: the two-sided formula ATen uses, every step rounded to float32. */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? f(s + f(step * i)) : f(e - f(step * (steps - i - 1)));
  return out;
}

export function alphasCumprod(config: Config): Float32Array {
  const steps = config.int('num_train_timesteps', 1000);
  const start = config.number('beta_start', 0.0001);
  const end = config.number('beta_end', 0.02);
  const schedule = config.string('beta_schedule', 'linear');
  if (config.isSet('trained_betas')) config.fail('trained_betas', 'is not supported');
  let betas: Float32Array;
  if (schedule === 'scaled_linear') betas = linspaceF32(Math.sqrt(start), Math.sqrt(end), steps).map((b) => f(b * b));
  else if (schedule === 'linear') betas = linspaceF32(start, end, steps);
  else return config.fail('beta_schedule', `'${schedule}' is not supported (scaled_linear, linear)`);
  const out = new Float32Array(steps);
  let acc = 1;
  for (let i = 0; i < steps; i++) {
    acc = f(acc * f(1 - betas[i]!));
    out[i] = acc;
  }
  return out;
}

/** x0 = (z - sqrt(1 - a) * eps) / sqrt(a), in float64 like the reference, rounded to float32 at the end. */
export function x0FromEps(z: FloatTensor, eps: FloatTensor, alphaCumprod: number): FloatTensor {
  const a = alphaCumprod;
  const sa = Math.sqrt(a);
  const s1 = Math.sqrt(1 - a);
  const out = floatTensor(z.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = (z.data[i]! - s1 * eps.data[i]!) / sa;
  return out;
}
