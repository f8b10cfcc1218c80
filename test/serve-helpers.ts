/**
 * Inputs and small HTTP helpers shared by the `osdface serve` tests (test/serve*.test.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { crc32 } from '../src/weights/zip.js';
import { shared } from './helpers.js';

export const GROUP_PHOTO = path.join(shared, 'data/whole/codeformer_01.jpg');
export const FACE_1024 = path.join(shared, 'data/faces-hq/test/ffhq_00000.png');

export interface Inputs {
  /** An aligned face, 128 x 128 PNG (fast on the tiny model). */
  face: Buffer;
  /** The same face with an alpha channel, 96 x 120 (non-square). */
  faceAlpha: Buffer;
  /** A group photo (JPEG, 5 faces). */
  group: Buffer;
  /** An aligned face, 1024 x 1024 PNG (slow enough to be caught mid-run). */
  bigFace: Buffer;
  /** A 90-byte PNG whose header declares 50000 x 50000 pixels. */
  bomb: Buffer;
  /** The face PNG cut in half. */
  truncated: Buffer;
}

/** A valid 1x1 PNG with its IHDR rewritten to declare `w` x `h` (CRC fixed), so only the pixel data betrays it. */
export async function pngBomb(w: number, h: number): Promise<Buffer> {
  const png = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).png().toBuffer());
  // signature (8), IHDR length (4), 'IHDR' (4), width, height at 16 and 20; CRC over type + data (17 bytes) at 29
  png.writeUInt32BE(w, 16);
  png.writeUInt32BE(h, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

export async function makeInputs(): Promise<Inputs> {
  const face = await sharp(FACE_1024).resize(128, 128).png().toBuffer();
  const { data } = await sharp(FACE_1024).resize(96, 120).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const rgba = Buffer.alloc(96 * 120 * 4);
  for (let i = 0; i < 96 * 120; i++) {
    data.copy(rgba, 4 * i, 3 * i, 3 * i + 3);
    rgba[4 * i + 3] = 255 - (i % 96) * 2;
  }
  const faceAlpha = await sharp(rgba, { raw: { width: 96, height: 120, channels: 4 } }).png().toBuffer();
  return {
    face,
    faceAlpha,
    group: fs.readFileSync(GROUP_PHOTO),
    bigFace: fs.readFileSync(FACE_1024),
    bomb: await pngBomb(50000, 50000),
    truncated: face.subarray(0, Math.floor(face.length / 2)),
  };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  json(): { error: { code: string; message: string } } & Record<string, unknown>;
}

/** POST an image (raw, with its content type) or a FormData to /v1/restore with query options. */
export async function restore(base: string, body: Buffer | FormData | null, query: Record<string, string | number | boolean> = {}, headers: Record<string, string> = {}): Promise<Answer> {
  const qs = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
  const init: RequestInit = { method: 'POST', headers: { ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== null) {
    init.body = new Uint8Array(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'image/png';
  }
  const res = await fetch(`${base}/v1/restore${qs ? `?${qs}` : ''}`, init);
  return answer(res);
}

export async function get(base: string, route: string, headers: Record<string, string> = {}): Promise<Answer> {
  return answer(await fetch(`${base}${route}`, { headers }));
}

async function answer(res: Response): Promise<Answer> {
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) };
}

/** The value of a Prometheus sample line `name{labels} value` (labels given as a substring), or 0. */
export function metric(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
