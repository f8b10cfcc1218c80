/**
 * Pixels with no I/O: the RGB image types, raw pixel objects to RGB (+ alpha), padding to the
 * square the network wants and back. Shared by Node (./io.ts adds sharp decoding, encoding and
 * files) and the browser (web/, which decodes with ImageBitmap / canvas).
 */
import { type FloatTensor, floatTensor, shapeStr } from '../tensor.js';
import { resizePixels } from './resize.js';

/** 8-bit RGB pixels, HWC (row-major, 3 bytes a pixel). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

export interface DecodedImage extends RgbImage {
  /** H*W alpha values, when the source had an alpha channel. */
  alpha?: Uint8Array;
  /** The source's format as sharp names it ('png', 'jpeg', 'webp', ...), or 'raw' for pixel objects. */
  sourceFormat: string;
}

/** Raw 8-bit pixels, HWC: grey, RGB or RGBA. */
export interface RawPixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** Where a non-square image sits inside its padded square (all in pixels of the square). */
export interface SquareCrop {
  left: number;
  top: number;
  width: number;
  height: number;
  /** Side of the square: max(width, height). */
  size: number;
}

/** Name used in errors for inputs that are not files. */
export const BYTES_NAME = '<image bytes>';
export const PIXELS_NAME = '<raw pixels>';

/** A problem with an image file (or image bytes / pixels); the message starts with `<file>: `. */
export class ImageError extends Error {
  /** The file path, or `<image bytes>` / `<raw pixels>` for in-memory inputs. */
  readonly file: string;

  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ImageError';
    this.file = file;
  }
}

/** Resizes RGB pixels to outW x outH with lanczos3 (sharp in Node's io.ts, ./resize.ts otherwise). */
export type ResizeRgb = (img: RgbImage, outW: number, outH: number) => Promise<Uint8Array>;

/** ./resize.ts's lanczos3 as a ResizeRgb. */
export const resizeRgb: ResizeRgb = async (img, outW, outH) => resizePixels(img, 3, outW, outH, 'lanczos3');

export function fromRawPixels(img: { data?: unknown; width?: unknown; height?: unknown; channels?: unknown }, format: string, name: string): DecodedImage {
  const { data, width, height, channels } = img;
  const bad = (what: string) => new ImageError(name, `cannot read image: ${what}`);
  if (!(data instanceof Uint8Array)) throw bad(`pixel data must be a Uint8Array, got ${describe(data)}`);
  if (!isDim(width) || !isDim(height)) throw bad(`width and height must be positive integers, got ${String(width)}x${String(height)}`);
  if (channels !== 1 && channels !== 3 && channels !== 4) throw bad(`channels must be 1, 3 or 4, got ${String(channels)}`);
  const need = width * height * channels;
  if (data.length !== need) throw bad(`pixel data has ${data.length} bytes, ${width}x${height}x${channels} needs ${need}`);
  return fromChannels(data, width, height, channels, format);
}

/** Interleaved 1-4 channel pixels (grey, grey+alpha, RGB, RGBA) to RGB plus optional alpha. */
export function fromChannels(src: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4, sourceFormat: string): DecodedImage {
  const n = width * height;
  if (channels === 3) return { data: Uint8Array.from(src), width, height, channels: 3, sourceFormat };
  const data = new Uint8Array(n * 3);
  const hasAlpha = channels === 2 || channels === 4;
  const alpha = hasAlpha ? new Uint8Array(n) : undefined;
  const grey = channels <= 2;
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    if (grey) {
      data[3 * i] = data[3 * i + 1] = data[3 * i + 2] = src[s];
    } else {
      data[3 * i] = src[s];
      data[3 * i + 1] = src[s + 1];
      data[3 * i + 2] = src[s + 2];
    }
    if (alpha) alpha[i] = src[s + channels - 1];
  }
  return alpha ? { data, width, height, channels: 3, alpha, sourceFormat } : { data, width, height, channels: 3, sourceFormat };
}

// ---------------------------------------------------------------------------------------------
// Square tensors

/** 1/255 steps as float32, exactly what torchvision's to_tensor gives for 8-bit input. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, k) => k / 255);

/**
 * Pads `img` to a square of side S = max(w, h) by replicating its edge pixels (centered; an odd
 * remainder goes to the right / bottom) and returns it as a (1, 3, S, S) tensor of k/255 values,
 * with the rectangle that holds the original image.
 */
export function toSquareTensor(img: RgbImage): { tensor: FloatTensor; crop: SquareCrop } {
  checkRgb(img, 'toSquareTensor');
  const { width: w, height: h, data } = img;
  const size = Math.max(w, h);
  const left = Math.floor((size - w) / 2);
  const top = Math.floor((size - h) / 2);
  const tensor = floatTensor([1, 3, size, size]);
  const out = tensor.data;
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    const sy = Math.min(h - 1, Math.max(0, y - top));
    for (let x = 0; x < size; x++) {
      const sx = Math.min(w - 1, Math.max(0, x - left));
      const s = 3 * (sy * w + sx);
      const o = y * size + x;
      out[o] = BYTE_TO_UNIT[data[s]];
      out[plane + o] = BYTE_TO_UNIT[data[s + 1]];
      out[2 * plane + o] = BYTE_TO_UNIT[data[s + 2]];
    }
  }
  return { tensor, crop: { left, top, width: w, height: h, size } };
}

/**
 * The inverse of toSquareTensor: a (1, 3, N, N) tensor in [0, 1] to 8-bit (clamped, round half
 * up), resized with lanczos3 (`opts.resize`, default the plain TypeScript one of ./resize.ts) from N to the square's side when they differ, and cropped back to
 * the original rectangle. With `opts.size`, the output's longer side is `size` instead.
 */
export async function fromSquareTensor(t: FloatTensor, crop: SquareCrop, opts: { size?: number; resize?: ResizeRgb } = {}): Promise<RgbImage> {
  const [b, c, n, n2] = t.shape;
  if (t.shape.length !== 4 || b !== 1 || c !== 3 || n !== n2 || n < 1 || t.data.length !== 3 * n * n) {
    throw new Error(`fromSquareTensor: expected a (1, 3, N, N) tensor, got ${shapeStr(t.shape)}`);
  }
  checkCrop(crop);
  const longer = Math.max(crop.width, crop.height);
  if (opts.size !== undefined && !isDim(opts.size)) throw new Error(`fromSquareTensor: size must be a positive integer, got ${opts.size}`);
  const scale = opts.size === undefined ? 1 : opts.size / longer;
  const side = opts.size === undefined ? crop.size : Math.max(1, Math.round(crop.size * scale));
  const rect = scaleRect(crop, scale, side);

  // CHW float -> HWC bytes
  const plane = n * n;
  let pixels: Uint8Array = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = t.data[ch * plane + i];
      pixels[3 * i + ch] = v > 0 ? Math.round(Math.min(v, 1) * 255) : 0; // NaN -> 0
    }
  }
  if (side !== n) pixels = await (opts.resize ?? resizeRgb)({ data: pixels, width: n, height: n, channels: 3 }, side, side);
  const data = new Uint8Array(rect.width * rect.height * 3);
  for (let y = 0; y < rect.height; y++) {
    const s = ((rect.top + y) * side + rect.left) * 3;
    data.set(pixels.subarray(s, s + rect.width * 3), y * rect.width * 3);
  }
  return { data, width: rect.width, height: rect.height, channels: 3 };
}

/** The crop rectangle in a square of side `side` that is `scale` times the original square. */
function scaleRect(crop: SquareCrop, scale: number, side: number): { left: number; top: number; width: number; height: number } {
  if (scale === 1) return crop;
  const axis = (start: number, len: number) => {
    const l = Math.min(side, Math.max(1, Math.round(len * scale)));
    return [Math.min(side - l, Math.round(start * scale)), l] as const;
  };
  const [left, width] = axis(crop.left, crop.width);
  const [top, height] = axis(crop.top, crop.height);
  return { left, top, width, height };
}

// ---------------------------------------------------------------------------------------------

export function isDim(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

export function checkRgb(img: RgbImage, where: string): void {
  if (!isDim(img.width) || !isDim(img.height) || img.channels !== 3 || img.data.length !== img.width * img.height * 3) {
    throw new Error(`${where}: expected an 8-bit RGB image, got ${img.width}x${img.height}x${img.channels} with ${img.data.length} bytes`);
  }
}

function checkCrop(c: SquareCrop): void {
  const ok =
    isDim(c.width) && isDim(c.height) && isDim(c.size) && Number.isInteger(c.left) && Number.isInteger(c.top) &&
    c.left >= 0 && c.top >= 0 && c.left + c.width <= c.size && c.top + c.height <= c.size;
  if (!ok) throw new Error(`fromSquareTensor: crop ${JSON.stringify(c)} does not fit its square`);
}

export function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].trim();
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'object';
}
