/**
 * The ESRGAN-slim background upsampler (src/photo/esrgan.ts): the networks rebuilt from the
 * @upscalerjs/esrgan-slim model.json files against outputs of the original tfjs layers models
 * (test/fixtures/esrgan_slim_ref.json; its note says how it was made), tiled against untiled,
 * and upscaleBackground('esrgan').
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { EsrganUpscaler } from '../src/photo/esrgan.js';
import { upscaleBackground } from '../src/photo/restore_photo.js';
import { repoRoot } from './helpers.js';

interface Fixture {
  input: number[];
  inputWidth: number;
  cases: { scale: 2 | 4; width: number; height: number; outputWidth: number; outputHeight: number; output: number[] }[];
}
const fixture = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test/fixtures/esrgan_slim_ref.json'), 'utf8')) as Fixture;

const nets: Partial<Record<2 | 4, EsrganUpscaler>> = {};
before(async () => {
  nets[2] = await EsrganUpscaler.load(2, { threads: 2 });
  nets[4] = await EsrganUpscaler.load(4, { threads: 2 });
});
after(async () => {
  await nets[2]?.dispose();
  await nets[4]?.dispose();
});

test('x2 and x4 match the tfjs layers models (max |diff| < 0.01 in 0..255 units)', async () => {
  for (const c of fixture.cases) {
    const { width: w, height: h } = c;
    const planar = new Float32Array(3 * w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let k = 0; k < 3; k++) planar[(k * h + y) * w + x] = fixture.input[(y * fixture.inputWidth + x) * 3 + k]!;
      }
    }
    const sr = await nets[c.scale]!.runPlanar(planar, h, w);
    const OW = c.outputWidth;
    const OH = c.outputHeight;
    assert.equal(sr.length, 3 * OW * OH);
    let max = 0;
    for (let y = 0; y < OH; y++) {
      for (let x = 0; x < OW; x++) {
        for (let k = 0; k < 3; k++) max = Math.max(max, Math.abs(sr[(k * OH + y) * OW + x]! - c.output[(y * OW + x) * 3 + k]!));
      }
    }
    // measured 2e-4 .. 4e-4 on real crops; the fixture is rounded to 0.001
    assert.ok(max < 0.01, `x${c.scale}: max |ours - tfjs| = ${max}`);
  }
});

/** A 96x96 test image with edges, texture and smooth parts. */
function testImage(): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const W = 96;
  const data = new Uint8Array(W * W * 3);
  for (let y = 0; y < W; y++) {
    for (let x = 0; x < W; x++) {
      const p = (y * W + x) * 3;
      data[p] = Math.round(127.5 + 127.5 * Math.sin(x / 5) * Math.cos(y / 7));
      data[p + 1] = (x - 48) ** 2 + (y - 40) ** 2 < 600 ? 220 : 30;
      data[p + 2] = ((x >> 3) + (y >> 3)) % 2 ? 200 : 60;
    }
  }
  return { data, width: W, height: W, channels: 3 };
}

test('tiled (32 px tiles, 24 px overlap) vs one 96x96 tile: max |diff| <= 1 of 255', async () => {
  const img = testImage();
  for (const scale of [2, 4] as const) {
    const whole = await nets[scale]!.upscale(img, { tile: 96 });
    const tiled = await nets[scale]!.upscale(img, { tile: 32, overlap: 24 });
    assert.deepEqual([tiled.width, tiled.height], [96 * scale, 96 * scale]);
    let max = 0;
    for (let i = 0; i < whole.data.length; i++) max = Math.max(max, Math.abs(whole.data[i]! - tiled.data[i]!));
    // measured 0: weights are 0 within 10 input px (the receptive field) of a shared tile edge
    assert.ok(max <= 1, `x${scale}: max |tiled - whole| = ${max}`);
  }
});

test("upscaleBackground('esrgan'): x2 and x4 sizes, alpha resized along", async () => {
  const img = { ...testImage(), alpha: new Uint8Array(96 * 96).fill(200) };
  const x2 = await upscaleBackground(img, 2, 'esrgan', { threads: 2 });
  assert.deepEqual([x2.width, x2.height, x2.data.length, x2.alpha?.length], [192, 192, 192 * 192 * 3, 192 * 192]);
  const whole = await nets[2]!.upscale(img);
  assert.ok(Buffer.from(x2.data).equals(Buffer.from(whole.data)), 'x2 is the x2 network (96 px fits one default tile)');
  assert.ok(x2.alpha!.every((v) => v === 200));
  const x4 = await upscaleBackground(img, 4, 'esrgan', { threads: 2, tile: 64 });
  assert.deepEqual([x4.width, x4.height], [384, 384]);
});
