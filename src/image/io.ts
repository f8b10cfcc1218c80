/**
 * The image side of restoring aligned face crops: decoding (files, encoded bytes or raw pixels)
 * to 8-bit RGB, padding to the square the network wants, converting back, encoding and writing.
 */

import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { type FloatTensor, floatTensor, shapeStr } from '../tensor.js';

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

/** A file path, encoded image bytes (Buffer / Uint8Array), or raw pixels. */
export type ImageInput = string | Buffer | Uint8Array | RgbImage | RawPixels;

/** Where a non-square image sits inside its padded square (all in pixels of the square). */
export interface SquareCrop {
  left: number;
  top: number;
  width: number;
  height: number;
  /** Side of the square: max(width, height). */
  size: number;
}

export type ImageFormat = 'png' | 'jpg' | 'webp';

/** Name used in errors for inputs that are not files. */
const BYTES_NAME = '<image bytes>';
const PIXELS_NAME = '<raw pixels>';

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

// ---------------------------------------------------------------------------------------------
// Decoding

export async function decodeImage(input: ImageInput): Promise<DecodedImage> {
  if (typeof input === 'string') return decodeBytes(await readImageFile(input), input);
  if (input instanceof Uint8Array) return decodeBytes(input, BYTES_NAME);
  if (input !== null && typeof input === 'object') return fromRawPixels(input, 'raw', PIXELS_NAME);
  throw new ImageError(PIXELS_NAME, `cannot read image: expected a file path, image bytes or a pixel object, got ${describe(input)}`);
}

async function readImageFile(file: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'file does not exist'
      : code === 'EISDIR' ? 'is a directory'
      : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'ENOTDIR' ? 'a parent of the path is not a directory'
      : firstLine(e);
    throw new ImageError(file, `cannot read image: ${reason}`, { cause: e });
  }
}

async function decodeBytes(bytes: Uint8Array, name: string): Promise<DecodedImage> {
  if (bytes.length === 0) throw new ImageError(name, 'cannot read image: file is empty');
  let format: string;
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    const img = sharp(bytes);
    format = (await img.metadata()).format ?? 'unknown';
    // rotate() with no angle applies the EXIF orientation; srgb turns grey (and 16-bit) into
    // 8-bit RGB and keeps an alpha channel as a 4th band; uchar makes the 8-bit depth explicit.
    out = await img.rotate().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    const msg = firstLine(e);
    const reason = /unsupported image format/i.test(msg) ? 'unsupported or unrecognised image format' : msg;
    throw new ImageError(name, `cannot read image: ${reason}`, { cause: e });
  }
  const { width, height, channels } = out.info;
  const data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
  if (channels !== 1 && channels !== 2 && channels !== 3 && channels !== 4) {
    throw new ImageError(name, `cannot read image: decoded to ${channels} channels, expected 1 to 4`);
  }
  return fromChannels(data, width, height, channels, format);
}

function fromRawPixels(img: { data?: unknown; width?: unknown; height?: unknown; channels?: unknown }, format: string, name: string): DecodedImage {
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
function fromChannels(src: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4, sourceFormat: string): DecodedImage {
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
 * up), resized with lanczos3 from N to the square's side when they differ, and cropped back to
 * the original rectangle. With `opts.size`, the output's longer side is `size` instead.
 */
export async function fromSquareTensor(t: FloatTensor, crop: SquareCrop, opts: { size?: number } = {}): Promise<RgbImage> {
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
  if (side !== n) {
    const resized = await sharp(pixels, { raw: { width: n, height: n, channels: 3 } })
      .resize(side, side, { kernel: 'lanczos3', fit: 'fill' })
      .raw()
      .toBuffer();
    pixels = new Uint8Array(resized.buffer, resized.byteOffset, resized.byteLength);
  }
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
// Encoding and writing

/**
 * Encodes `img` as PNG, JPEG (quality 95) or WebP (quality 95). `alpha` (H*W) is attached when
 * its size matches the image and the format can hold it (not JPEG); otherwise it is ignored.
 */
export async function encodeImage(img: RgbImage, format: ImageFormat, alpha?: Uint8Array): Promise<Buffer> {
  checkRgb(img, 'encodeImage');
  const { width, height } = img;
  const n = width * height;
  const withAlpha = alpha !== undefined && alpha.length === n && format !== 'jpg';
  let raw: Uint8Array = img.data;
  if (withAlpha) {
    raw = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      raw[4 * i] = img.data[3 * i];
      raw[4 * i + 1] = img.data[3 * i + 1];
      raw[4 * i + 2] = img.data[3 * i + 2];
      raw[4 * i + 3] = alpha[i];
    }
  }
  const s = sharp(raw, { raw: { width, height, channels: withAlpha ? 4 : 3 } });
  switch (format) {
    case 'png':
      return s.png().toBuffer();
    case 'jpg':
      return s.jpeg({ quality: 95 }).toBuffer();
    case 'webp':
      return s.webp({ quality: 95, alphaQuality: 100 }).toBuffer();
    default:
      throw new Error(`encodeImage: unknown format '${String(format)}' (png, jpg or webp)`);
  }
}

/** Writes `bytes` to `<file>.tmp-<pid>` and renames it over `file`, creating parent folders. */
export async function writeImageAtomic(file: string, bytes: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(tmp, bytes);
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw new ImageError(file, `cannot write image: ${firstLine(e)}`, { cause: e });
  }
}

/** The output format a file name asks for: .png, .jpg / .jpeg, .webp (case-insensitive). */
export function formatOfFile(file: string): ImageFormat | null {
  const ext = path.extname(file).toLowerCase();
  return ext === '.png' ? 'png' : ext === '.jpg' || ext === '.jpeg' ? 'jpg' : ext === '.webp' ? 'webp' : null;
}

/**
 * Writes `img` (an RgbImage such as `model.restore`'s result, or `restorePhoto`'s `image`) to
 * `file` in the format its extension names (png, jpg / jpeg, webp), with the image's `alpha`
 * channel on png and webp. The folder is created if missing; the file appears only complete
 * (written beside it, then renamed). Resolves to the path written.
 */
export async function saveImage(img: RgbImage & { alpha?: Uint8Array }, file: string, opts: { format?: ImageFormat } = {}): Promise<string> {
  if (typeof file !== 'string' || file === '') throw new TypeError('saveImage: file must be a path ending in .png, .jpg, .jpeg or .webp');
  const format = opts.format ?? formatOfFile(file);
  if (format === null) {
    throw new ImageError(file, `saveImage: cannot tell the format from the extension '${path.extname(file)}': use .png, .jpg, .jpeg or .webp, or pass { format }`);
  }
  await writeImageAtomic(file, await encodeImage(img, format, img.alpha));
  return file;
}

// ---------------------------------------------------------------------------------------------

function isDim(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

function checkRgb(img: RgbImage, where: string): void {
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

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].trim();
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'object';
}
