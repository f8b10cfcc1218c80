/**
 * SSIM as a training distance: 1 - the mean over RGB channels and windows of Wang et al.'s SSIM,
 * with the window, constants and 'valid' borders of the metric `osdface eval` reports
 * (src/metrics/psnr_ssim.ts, BasicSR's calculate_ssim), on [0, 1] images. L1 and MSE are blind to
 * how detail is placed; SSIM's structure term rewards detail that moves with the target's, which
 * is the fidelity a texture loss gives away first.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { ssimWindow1d } from '../metrics/psnr_ssim.js';

/** BasicSR's (0.01·255)² and (0.03·255)², on the [0, 1] scale. */
const C1 = 0.01 ** 2;
const C2 = 0.03 ** 2;

/** The 11x11 Gaussian window as two depthwise 'valid' passes (along x, then y) over `channels` channels. */
function gaussianWindow(g: Graph, channels: number): (x: Value) => Value {
  const taps = Float32Array.from(ssimWindow1d());
  const k = taps.length;
  const kernel = (shape: number[], name: string) => {
    const data = new Float32Array(channels * k);
    for (let c = 0; c < channels; c++) data.set(taps, c * k);
    return op.floatConst(g, shape, data, name);
  };
  const [alongX, alongY] = [kernel([channels, 1, 1, k], 'ssim_window_x'), kernel([channels, 1, k, 1], 'ssim_window_y')];
  return (x) => op.conv(op.conv(x, alongX, null, { groups: channels }), alongY, null, { groups: channels });
}

/** SSIM of x and y (B, C, H, W) in [0, 1], per image: the mean over channels and window positions (B,). */
export function ssimPerImage(g: Graph, x: Value, y: Value): Value {
  const [b, c, h, w] = x.shape as number[];
  if (h! < 11 || w! < 11) g.fail(`ssim: images must be at least 11x11 (the Gaussian window), got ${w}x${h}`);
  const window = gaussianWindow(g, c!);
  const muX = window(x);
  const muY = window(y);
  const muXX = op.mul(muX, muX);
  const muYY = op.mul(muY, muY);
  const muXY = op.mul(muX, muY);
  const varX = op.sub(window(op.mul(x, x)), muXX);
  const varY = op.sub(window(op.mul(y, y)), muYY);
  const covXY = op.sub(window(op.mul(x, y)), muXY);
  const numerator = op.mul(op.add(op.mul(muXY, 2), C1), op.add(op.mul(covXY, 2), C2));
  const denominator = op.mul(op.add(op.add(muXX, muYY), C1), op.add(op.add(varX, varY), C2));
  return op.reduceMean(op.reshape(op.div(numerator, denominator), [b!, -1]), [1], false);
}

/** 1 - SSIM per image (B,): 0 for the same image, up to 2 for opposite structure. */
export function ssimDistance(g: Graph, x: Value, y: Value): Value {
  return op.neg(op.sub(ssimPerImage(g, x, y), 1));
}
