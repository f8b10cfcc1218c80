/** The browser's image I/O: decoding a file with ImageBitmap + canvas, encoding PNG with canvas, and the resizes of ../../src/image/resize.ts. */
import { fromRawPixels, ImageError, type DecodedImage, type RgbImage } from '../../src/image/pixels.js';
import { resizePixels } from '../../src/image/resize.js';

export const ACCEPTED = ['image/jpeg', 'image/png', 'image/webp'];

/** A picked or dropped file to 8-bit RGB (+ alpha when it has any), EXIF orientation applied, no colour conversion. */
export async function decodeFile(file: Blob & { name?: string }): Promise<DecodedImage> {
  const name = file.name ?? '<dropped image>';
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch {
    throw new ImageError(name, `not an image this page can read (${file.type || 'unknown type'}); open a JPEG, PNG or WebP file`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
  let opaque = true;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) { opaque = false; break; }
  if (!opaque) return { ...fromRawPixels({ data: rgba, width, height, channels: 4 }, file.type || 'raw', name), sourceFormat: file.type };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]!;
    rgb[j + 1] = rgba[i + 1]!;
    rgb[j + 2] = rgba[i + 2]!;
  }
  return { data: rgb, width, height, channels: 3, sourceFormat: file.type };
}

/** RGB (+ alpha) to ImageData, for drawing. */
export function toImageData(img: RgbImage & { alpha?: Uint8Array }): ImageData {
  const out = new ImageData(img.width, img.height);
  const d = out.data;
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) {
    d[i] = img.data[j]!;
    d[i + 1] = img.data[j + 1]!;
    d[i + 2] = img.data[j + 2]!;
    d[i + 3] = img.alpha ? img.alpha[j / 3]! : 255;
  }
  return out;
}

export function toCanvas(img: RgbImage & { alpha?: Uint8Array }): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = img.width;
  c.height = img.height;
  c.getContext('2d')!.putImageData(toImageData(img), 0, 0);
  return c;
}

export function encodePng(img: RgbImage & { alpha?: Uint8Array }): Promise<Blob> {
  const c = toCanvas(img);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('the browser could not encode the PNG'))), 'image/png'));
}

export async function resizeRgb(img: RgbImage, w: number, h: number): Promise<Uint8Array> {
  return resizePixels(img, 3, w, h, 'lanczos3');
}

export async function resizeAlpha(alpha: Uint8Array, w: number, h: number, outW: number, outH: number): Promise<Uint8Array> {
  if (w === outW && h === outH) return alpha;
  return resizePixels({ data: alpha, width: w, height: h }, 1, outW, outH, 'lanczos3');
}
