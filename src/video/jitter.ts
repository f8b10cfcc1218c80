/**
 * Steadiness metrics for restored video.
 *
 * - `trajectoryJitter`: the frame-to-frame noise of a coordinate over time, with the smooth motion
 *   taken out: the RMS of its second difference x[t+1] - 2 x[t] + x[t-1] (zero for motion at a
 *   constant speed), divided by sqrt(6) so that white noise of standard deviation s measures s.
 *   `landmarkJitter` is its RMS over the 10 coordinates of a face's 5 landmarks (pixels).
 * - `cropJitter`: the mean absolute frame-to-frame change (0-255) of the centre of aligned face
 *   crops, i.e. how much the face flickers once the camera's motion is taken out.
 * - `polyFit`: a least-squares polynomial in time, the smooth motion of a still subject under a
 *   slow pan and zoom (the reference the bench aligns the output frames with).
 */
import type { Landmarks5 } from '../face/detector.js';
import type { RgbImage } from '../image/io.js';

/** Frame-to-frame noise of `values` (one per frame): RMS second difference / sqrt(6); 0 for fewer than 3. */
export function trajectoryJitter(values: readonly number[]): number {
  if (values.length < 3) return 0;
  let sum = 0;
  for (let t = 1; t < values.length - 1; t++) {
    const d2 = values[t + 1]! - 2 * values[t]! + values[t - 1]!;
    sum += d2 * d2;
  }
  return Math.sqrt(sum / (values.length - 2) / 6);
}

/** RMS over the 10 landmark coordinates of their trajectoryJitter, in the landmarks' units (pixels). */
export function landmarkJitter(track: readonly Landmarks5[]): number {
  let sum = 0;
  for (let k = 0; k < 5; k++) {
    for (let c = 0; c < 2; c++) sum += trajectoryJitter(track.map((l) => l[k]![c]!)) ** 2;
  }
  return Math.sqrt(sum / 10);
}

/** Mean absolute change between consecutive crops (same size), over the central `inner` fraction of each side. */
export function cropJitter(crops: readonly RgbImage[], inner = 0.6): number {
  if (crops.length < 2) return 0;
  const { width: w, height: h } = crops[0]!;
  const x0 = Math.round((w * (1 - inner)) / 2);
  const y0 = Math.round((h * (1 - inner)) / 2);
  const x1 = w - x0;
  const y1 = h - y0;
  let sum = 0;
  let n = 0;
  for (let i = 1; i < crops.length; i++) {
    const a = crops[i - 1]!.data;
    const b = crops[i]!.data;
    if (crops[i]!.width !== w || crops[i]!.height !== h) throw new Error('cropJitter: crops of different sizes');
    for (let y = y0; y < y1; y++) {
      for (let x = x0 * 3 + y * w * 3, end = x1 * 3 + y * w * 3; x < end; x++) {
        sum += Math.abs(a[x]! - b[x]!);
        n++;
      }
    }
  }
  return sum / n;
}

/** Least-squares polynomial of `degree` through (t, values[t]), t = 0, 1, ...; returns its values at each t. */
export function polyFit(values: readonly number[], degree: number): number[] {
  const n = values.length;
  const d = Math.min(degree, n - 1) + 1;
  // normal equations on t scaled to [-1, 1], solved by Gaussian elimination with partial pivoting
  const s = (t: number) => (n > 1 ? (2 * t) / (n - 1) - 1 : 0);
  const A = Array.from({ length: d }, () => new Array<number>(d + 1).fill(0));
  for (let t = 0; t < n; t++) {
    const x = s(t);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) A[i]![j]! += x ** (i + j);
      A[i]![d]! += x ** i * values[t]!;
    }
  }
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(A[r]![c]!) > Math.abs(A[p]![c]!)) p = r;
    [A[c], A[p]] = [A[p]!, A[c]!];
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = A[r]![c]! / A[c]![c]!;
      for (let k = c; k <= d; k++) A[r]![k]! -= f * A[c]![k]!;
    }
  }
  const coef = A.map((row, i) => row[d]! / row[i]!);
  return Array.from({ length: n }, (_, t) => coef.reduce((acc, a, i) => acc + a * s(t) ** i, 0));
}
