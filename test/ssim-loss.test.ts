import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noWeights } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { ssimDistance } from '../src/train/ssim_loss.js';
import { ssim } from '../src/metrics/psnr_ssim.js';
import type { RgbImage } from '../src/image/io.js';
import { floatTensor } from '../src/tensor.js';
import { Random } from '../src/degrade/random.js';

const [w, h] = [40, 32];

/** A smooth random image: a few colour gradients and blobs, 8-bit. */
function image(rand: Random): RgbImage {
  const data = new Uint8Array(w * h * 3);
  const a = Array.from({ length: 9 }, () => rand.uniform(-1, 1));
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
    const v = 128 + 60 * Math.sin(x * 0.2 * (1 + a[c]!) + a[3 + c]! * 3) * Math.cos(y * 0.15 * (1 + a[6 + c]!));
    data[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
  }
  return { data, width: w, height: h, channels: 3 };
}

/** The same image with per-pixel noise of the given amplitude, 8-bit. */
function noisy(img: RgbImage, rand: Random, amplitude: number): RgbImage {
  return { ...img, data: img.data.map((v) => Math.max(0, Math.min(255, Math.round(v + amplitude * rand.normal())))) };
}

/** (1, 3, H, W) in [0, 1], the trainer's pixel range. */
function planar(img: RgbImage) {
  const out = new Float32Array(3 * w * h);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) out[c * w * h + i] = img.data[i * 3 + c]! / 255;
  return floatTensor([1, 3, h, w], out);
}

test('loss.ssim is 1 - the SSIM that osdface eval reports (BasicSR\'s window, constants and borders), per image', async () => {
  const g = new Graph('ssim_loss');
  const x = g.input('x', 'float32', [2, 3, h, w]);
  const y = g.input('y', 'float32', [2, 3, h, w]);
  g.output(ssimDistance(g, x, y), 'distance');
  const session = await OnnxSession.create(emitOnnx(g, { weights: noWeights }), { threads: 1 });
  const rand = new Random('ssim-loss');
  const target = [image(rand), image(rand)];
  const restored = [noisy(target[0]!, rand, 6), noisy(target[1]!, rand, 25)];
  const stack = (imgs: RgbImage[]) => {
    const t = floatTensor([2, 3, h, w]);
    imgs.forEach((img, i) => t.data.set(planar(img).data, i * 3 * w * h));
    return t;
  };
  const got = (await session.run({ x: stack(restored), y: stack(target) })).distance!.data as Float32Array;
  const same = (await session.run({ x: stack(target), y: stack(target) })).distance!.data as Float32Array;
  for (let i = 0; i < 2; i++) {
    const expected = 1 - ssim(restored[i]!, target[i]!);
    assert.ok(Math.abs(got[i]! - expected) < 2e-4, `image ${i}: ${got[i]} against 1 - eval's SSIM ${expected}`);
    assert.ok(Math.abs(same[i]!) < 1e-5, `the same image: ${same[i]}`);
  }
  assert.ok(got[1]! > got[0]! + 0.1, `more noise, a larger distance: ${got[0]} then ${got[1]}`);
});
