/**
 * The image side of restoring aligned face crops in Node: decoding (files, encoded bytes or raw
 * pixels) to 8-bit RGB and encoding with sharp, writing files. The pixel work with no I/O (types,
 * squaring, converting back) is ./pixels.ts, shared with the browser.
 */

import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { FloatTensor } from '../tensor.js';
import {
  BYTES_NAME, PIXELS_NAME, checkRgb, describe, firstLine, fromChannels, fromRawPixels, fromSquareTensor as fromSquareTensorWith,
  ImageError, type DecodedImage, type RawPixels, type RgbImage, type SquareCrop,
} from './pixels.js';

export {
  fromChannels, fromRawPixels, ImageError, toSquareTensor, type DecodedImage, type RawPixels, type ResizeRgb, type RgbImage, type SquareCrop,
} from './pixels.js';

/** A file path, encoded image bytes (Buffer / Uint8Array), or raw pixels. */
export type ImageInput = string | Buffer | Uint8Array | RgbImage | RawPixels;

export type ImageFormat = 'png' | 'jpg' | 'webp';

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

/** sharp's lanczos3 resize of RGB pixels (what Node's restore has always used). */
export async function sharpResizeRgb(img: RgbImage, outW: number, outH: number): Promise<Uint8Array> {
  const resized = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(outW, outH, { kernel: 'lanczos3', fit: 'fill' })
    .raw()
    .toBuffer();
  return new Uint8Array(resized.buffer, resized.byteOffset, resized.byteLength);
}

/** pixels.ts's fromSquareTensor, resizing with sharp unless `opts.resize` says otherwise. */
export function fromSquareTensor(t: FloatTensor, crop: SquareCrop, opts: { size?: number; resize?: (img: RgbImage, w: number, h: number) => Promise<Uint8Array> } = {}): Promise<RgbImage> {
  return fromSquareTensorWith(t, crop, { resize: sharpResizeRgb, ...opts });
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

