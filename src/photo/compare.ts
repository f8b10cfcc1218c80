/**
 * A side-by-side "before | after" image: the input, resized (lanczos3) to the height of the
 * restored image, on the left; the restored image on the right.
 */
import sharp from 'sharp';
import type { PhotoImage } from './restore_photo.js';

async function resizeTo(img: PhotoImage, width: number, height: number): Promise<PhotoImage> {
  if (img.width === width && img.height === height) return img;
  const n = img.width * img.height;
  const channels = img.alpha ? 4 : 3;
  let raw: Uint8Array = img.data;
  if (img.alpha) {
    raw = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      raw[4 * i] = img.data[3 * i]!;
      raw[4 * i + 1] = img.data[3 * i + 1]!;
      raw[4 * i + 2] = img.data[3 * i + 2]!;
      raw[4 * i + 3] = img.alpha[i]!;
    }
  }
  // resized as given (no alpha premultiplication), like the restored image's background
  const buf = await sharp(raw, { raw: { width: img.width, height: img.height, channels } })
    .resize(width, height, { kernel: 'lanczos3', fit: 'fill' })
    .raw()
    .toBuffer();
  const m = width * height;
  const data = new Uint8Array(m * 3);
  const alpha = img.alpha ? new Uint8Array(m) : undefined;
  for (let i = 0; i < m; i++) {
    data[3 * i] = buf[channels * i]!;
    data[3 * i + 1] = buf[channels * i + 1]!;
    data[3 * i + 2] = buf[channels * i + 2]!;
    if (alpha) alpha[i] = buf[4 * i + 3]!;
  }
  return alpha ? { data, width, height, channels: 3, alpha } : { data, width, height, channels: 3 };
}

/**
 * `before` (resized to `after`'s height, aspect ratio kept) and `after`, side by side. The result
 * has an alpha channel when either image has one (opaque where the other has none).
 */
export async function sideBySide(before: PhotoImage, after: PhotoImage): Promise<PhotoImage> {
  const H = after.height;
  const bw = Math.max(1, Math.round((before.width * H) / before.height));
  const left = await resizeTo(before, bw, H);
  const W = bw + after.width;
  const data = new Uint8Array(W * H * 3);
  const withAlpha = left.alpha !== undefined || after.alpha !== undefined;
  const alpha = withAlpha ? new Uint8Array(W * H).fill(255) : undefined;
  for (let y = 0; y < H; y++) {
    data.set(left.data.subarray(3 * y * bw, 3 * (y + 1) * bw), 3 * y * W);
    data.set(after.data.subarray(3 * y * after.width, 3 * (y + 1) * after.width), 3 * (y * W + bw));
    if (alpha && left.alpha) alpha.set(left.alpha.subarray(y * bw, (y + 1) * bw), y * W);
    if (alpha && after.alpha) alpha.set(after.alpha.subarray(y * after.width, (y + 1) * after.width), y * W + bw);
  }
  return alpha ? { data, width: W, height: H, channels: 3, alpha } : { data, width: W, height: H, channels: 3 };
}
