import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { shared } from './helpers.js';
import { latticeRatio } from '../src/metrics/lattice.js';
import { Random } from '../src/degrade/random.js';
import type { RgbImage } from '../src/image/pixels.js';

const faces = path.join(shared, 'data/faces-hq/test');
const skip = fs.existsSync(faces) ? false : `test faces not found at ${faces}`;

async function readFace(): Promise<RgbImage> {
  const file = path.join(faces, fs.readdirSync(faces).filter((f) => f.endsWith('.png')).sort()[0]!);
  const { data, info } = await sharp(file).resize(256, 256).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
}

/** `img` with `detail(y, x)` (0..255 units) added to every channel, rounded and clipped. */
function withDetail(img: RgbImage, detail: (y: number, x: number) => number): RgbImage {
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++) for (let x = 0; x < img.width; x++) {
    const d = detail(y, x);
    for (let c = 0; c < 3; c++) data[(y * img.width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(img.data[(y * img.width + x) * 3 + c]! + d)));
  }
  return { ...img, data };
}

test('lattice ratio: about 1 for a photograph and for added noise, far above 1 for a mesh repeated in every 8-pixel cell', { skip }, async () => {
  const face = await readFace();
  const photo = latticeRatio(face);
  assert.ok(photo > 0.5 && photo < 2, `photograph: ${photo}`);
  const rand = new Random('lattice-metric');
  const tile = Array.from({ length: 64 }, () => 4 * rand.normal());
  const meshed = latticeRatio(withDetail(face, (y, x) => tile[(y % 8) * 8 + (x % 8)]!));
  const noisy = latticeRatio(withDetail(face, () => 4 * rand.normal()));
  assert.ok(meshed > 4, `mesh: ${meshed}`);
  assert.ok(noisy > 0.5 && noisy < 2, `noise of the same power: ${noisy}`);
  // The same mesh moved by a pixel is the same artifact: the measure does not care about the grid's phase.
  assert.ok(Math.abs(latticeRatio(withDetail(face, (y, x) => tile[((y + 1) % 8) * 8 + ((x + 3) % 8)]!)) - meshed) < 0.2 * meshed);
  assert.throws(() => latticeRatio({ data: new Uint8Array(3 * 16 * 16), width: 16, height: 16, channels: 3 }), /lattice: needs at least 32x32 pixels, the image is 16x16/);
});
