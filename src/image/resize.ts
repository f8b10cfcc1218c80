/**
 * Resizing 8-bit interleaved pixels in plain TypeScript, so Node and the browser get the same
 * pixels (the face detector's image pyramid, the browser's background and alpha resizes).
 *
 * 'lanczos3': separable Lanczos (a = 3) on pixel centres (output x covers input (x + 0.5) * s - 0.5),
 * its support widened by the scale when shrinking (an antialiasing low-pass), weights normalised
 * per output pixel, rounded to the nearest byte. 'nearest': the input pixel under each output
 * pixel's centre.
 */

export type ResizeKernel = 'lanczos3' | 'nearest';

export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

function lanczos3(x: number): number {
  return x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

/** Per output index: first input index and normalised weights along one axis. */
function weights(inSize: number, outSize: number): { start: Int32Array; count: number; w: Float64Array } {
  const scale = inSize / outSize;
  const stretch = Math.max(1, scale);
  const support = 3 * stretch;
  const count = Math.ceil(2 * support) + 1;
  const start = new Int32Array(outSize);
  const w = new Float64Array(outSize * count);
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale - 0.5;
    const first = Math.floor(centre - support) + 1;
    start[o] = first;
    let sum = 0;
    for (let k = 0; k < count; k++) {
      const v = lanczos3((first + k - centre) / stretch);
      w[o * count + k] = v;
      sum += v;
    }
    for (let k = 0; k < count; k++) w[o * count + k]! /= sum;
  }
  return { start, count, w };
}

/** `img` (interleaved, `channels` per pixel) resized to outW x outH. */
export function resizePixels(img: Pixels, channels: number, outW: number, outH: number, kernel: ResizeKernel = 'lanczos3'): Uint8Array {
  const { data, width: W, height: H } = img;
  if (data.length !== W * H * channels) throw new Error(`resizePixels: ${data.length} bytes for ${W}x${H}x${channels}`);
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) throw new Error(`resizePixels: bad output size ${outW}x${outH}`);
  if (outW === W && outH === H) return Uint8Array.from(data);
  const out = new Uint8Array(outW * outH * channels);
  if (kernel === 'nearest') {
    for (let y = 0; y < outH; y++) {
      const sy = Math.min(H - 1, Math.floor(((y + 0.5) * H) / outH));
      for (let x = 0; x < outW; x++) {
        const sx = Math.min(W - 1, Math.floor(((x + 0.5) * W) / outW));
        for (let c = 0; c < channels; c++) out[(y * outW + x) * channels + c] = data[(sy * W + sx) * channels + c]!;
      }
    }
    return out;
  }
  // horizontal pass into float rows, then vertical pass
  const hx = weights(W, outW);
  const tmp = new Float32Array(H * outW * channels);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < outW; x++) {
      const s0 = hx.start[x]!;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < hx.count; k++) {
          const wk = hx.w[x * hx.count + k]!;
          if (wk === 0) continue;
          const sx = Math.min(W - 1, Math.max(0, s0 + k));
          acc += wk * data[(y * W + sx) * channels + c]!;
        }
        tmp[(y * outW + x) * channels + c] = acc;
      }
    }
  }
  const vy = weights(H, outH);
  for (let y = 0; y < outH; y++) {
    const s0 = vy.start[y]!;
    for (let x = 0; x < outW; x++) {
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < vy.count; k++) {
          const wk = vy.w[y * vy.count + k]!;
          if (wk === 0) continue;
          const sy = Math.min(H - 1, Math.max(0, s0 + k));
          acc += wk * tmp[(sy * outW + x) * channels + c]!;
        }
        out[(y * outW + x) * channels + c] = acc <= 0 ? 0 : acc >= 255 ? 255 : Math.round(acc);
      }
    }
  }
  return out;
}
