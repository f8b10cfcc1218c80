/**
 * The image of a restore request: taken from the body (raw `image/*` bytes, or the `image` file
 * field of a multipart form), its declared size checked against the pixel limit from the header
 * alone (before any decoding, so an image bomb costs nothing), then decoded as `osdface restore`
 * decodes files (EXIF orientation, grey, 16-bit, alpha). Every problem is a 4xx HttpError.
 */
import sharp from 'sharp';
import type { FastifyRequest } from 'fastify';
import type { Multipart } from '@fastify/multipart';
import { decodeImage, ImageError, type DecodedImage } from '../image/io.js';
import { HttpError } from './errors.js';
import { validateMultipartFields } from './options.js';

export interface RequestImage {
  bytes: Buffer;
  /** Options given as multipart fields (validated and coerced); {} for a raw body. */
  fields: Record<string, unknown>;
}

/**
 * Raster formats a request may send (sharp's names). Vector and document formats (svg, pdf), which
 * sharp would render and which can reference other files, and its debugging formats are refused.
 */
export const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'jp2', 'jxl'] as const;

const bad = (code: 'missing_body' | 'invalid_image' | 'invalid_option', msg: string) => new HttpError(code === 'invalid_image' ? 422 : 400, code, msg);

/** The image bytes and multipart fields of the request; `maxBytes` is --max-body. */
export async function readRequestImage(request: FastifyRequest, maxBytes: number): Promise<RequestImage> {
  if (!request.isMultipart()) {
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0) {
      throw bad('missing_body', 'the request has no image: send the image bytes as the body (Content-Type: image/png, image/jpeg, ...) or as the multipart field \'image\'');
    }
    return { bytes: body, fields: {} };
  }
  let bytes: Buffer | null = null;
  const raw: Record<string, string> = {};
  for await (const part of request.parts({ limits: { fileSize: maxBytes, files: 1, fields: 16, fieldSize: 256 } }) as AsyncIterableIterator<Multipart>) {
    if (part.type === 'file') {
      if (part.fieldname !== 'image') {
        part.file.resume();
        throw bad('invalid_option', `unexpected file field '${part.fieldname}'; send the image as the multipart field 'image'`);
      }
      bytes = await part.toBuffer();
    } else {
      if (part.fieldname in raw) throw bad('invalid_option', `multipart field '${part.fieldname}' is given twice`);
      raw[part.fieldname] = String(part.value);
    }
  }
  if (bytes === null || bytes.length === 0) {
    throw bad('missing_body', bytes === null ? 'the multipart form has no file field \'image\'; send the image as the field \'image\'' : 'the multipart field \'image\' is empty');
  }
  return { bytes, fields: validateMultipartFields(raw) };
}

/**
 * Decodes the image after checking, from its header, that width x height is within `maxPixels`
 * (as sharp's limitInputPixels would, but before any pixel is decoded).
 */
export async function decodeChecked(bytes: Buffer, maxPixels: number): Promise<DecodedImage> {
  let width: number | undefined;
  let height: number | undefined;
  let format: string | undefined;
  try {
    ({ width, height, format } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    throw bad('invalid_image', `the body is not an image osdface can read (png, jpeg, webp, tiff, gif, avif...): ${/unsupported image format/i.test(msg) ? 'unsupported or unrecognised image format' : msg}`);
  }
  if (!(ACCEPTED_FORMATS as readonly string[]).includes(format ?? '')) {
    throw bad('invalid_image', `images in the ${format ?? 'unknown'} format are not accepted; send ${ACCEPTED_FORMATS.join(', ')}`);
  }
  if (!width || !height) throw bad('invalid_image', 'the image header does not give its width and height');
  if (width * height > maxPixels) {
    throw new HttpError(413, 'image_too_large', `the image declares ${width}x${height} = ${(width * height / 1e6).toFixed(1)} megapixels, over the limit of ${(maxPixels / 1e6).toFixed(1)} (--max-pixels); send a smaller image`);
  }
  try {
    return await decodeImage(bytes);
  } catch (e) {
    if (e instanceof ImageError) throw bad('invalid_image', `the image cannot be decoded (truncated or corrupt?): ${e.message.replace(/^<image bytes>: (cannot read image: )?/, '')}`);
    throw e;
  }
}
