/**
 * The public API (OSDFace.load / restore / dispose) on a tiny model converted from parity-a
 * (process size 64) and real face crops from ../shared/data/real-lq.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ImageError, ModelDirError, OSDFace, type RestoredImage } from '../src/index.js';
import { decodeImage, type RawPixels } from '../src/image/io.js';
import { convertParityA, noFixtures, realLq, shared } from './helpers.js';

const skip = noFixtures || (fs.existsSync(realLq) ? false : `face images not found at ${realLq}`);
const faces = skip ? [] : fs.readdirSync(realLq).filter((f) => f.endsWith('.png')).sort().slice(0, 3).map((f) => path.join(realLq, f));

let work = '';
let modelDir = '';
let model: OSDFace;

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-api-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  model = await OSDFace.load(modelDir, { threads: 2 });
});

after(async () => {
  await model?.dispose();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Number of bytes that differ, and the largest difference. */
function compare(a: RestoredImage, b: RestoredImage): { differ: number; max: number } {
  assert.equal(a.data.length, b.data.length);
  let differ = 0;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (d) differ++;
    max = Math.max(max, d);
  }
  return { differ, max };
}

/** A w x h crop of a face image with an alpha ramp, as raw RGBA pixels. */
async function rgbaCrop(file: string, width: number, height: number): Promise<RawPixels> {
  const rgb = await sharp(file).extract({ left: 40, top: 10, width, height }).removeAlpha().raw().toBuffer();
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    data.set(rgb.subarray(3 * i, 3 * i + 3), 4 * i);
    data[4 * i + 3] = (i % width) * 255 / (width - 1);
  }
  return { data, width, height, channels: 4 };
}

test('restore: a face image comes back at its own size, or with `size` as its longer side', { skip }, async () => {
  const input = await decodeImage(faces[0]!);
  const out = await model.restore(faces[0]!);
  assert.equal(model.processSize, 64);
  assert.deepEqual([out.width, out.height, out.channels, out.data.length], [input.width, input.height, 3, input.width * input.height * 3]);
  assert.equal(out.alpha, undefined);
  assert.equal(out.seed, undefined, 'the mode path uses no seed');
  assert.ok(compare(out, input).differ > 0, 'the output is not the input');
  const small = await model.restore(fs.readFileSync(faces[0]!), { size: 100 });
  assert.deepEqual([small.width, small.height, small.data.length], [100, 100, 100 * 100 * 3]);
});

test("restore: latent 'sample' with a seed is deterministic; another seed gives other pixels", { skip }, async () => {
  const a = await model.restore(faces[1]!, { latent: 'sample', seed: 42 });
  const b = await model.restore(faces[1]!, { latent: 'sample', seed: 42 });
  const c = await model.restore(faces[1]!, { latent: 'sample', seed: 43 });
  assert.equal(a.seed, 42);
  assert.deepEqual(compare(a, b), { differ: 0, max: 0 });
  assert.ok(compare(a, c).differ > 1000, `seeds 42 and 43 differ in ${compare(a, c).differ} bytes`);
});

test('restore([a, b]): one batch equals two single calls with seed and seed + 1, pixel for pixel', { skip }, async () => {
  const [b0, b1] = await model.restore([faces[0]!, faces[2]!], { latent: 'sample', seed: 7 });
  const s0 = await model.restore(faces[0]!, { latent: 'sample', seed: 7 });
  const s1 = await model.restore(faces[2]!, { latent: 'sample', seed: 8 });
  assert.deepEqual([b0!.seed, b1!.seed], [7, 8]);
  // Measured on onnxruntime CPU: batch 2 and batch 1 give identical bytes (not merely within 1/255).
  assert.deepEqual(compare(b0!, s0), { differ: 0, max: 0 });
  assert.deepEqual(compare(b1!, s1), { differ: 0, max: 0 });
});

test('restore: non-square images are padded, restored and cropped back to their size, alpha returned', { skip }, async () => {
  const wide = await rgbaCrop(faces[0]!, 300, 200);
  const tall = await rgbaCrop(faces[1]!, 150, 240);
  // Different squares (300 and 240): two groups in one call, results in the caller's order.
  const [w, t] = await model.restore([wide, tall]);
  assert.deepEqual([w!.width, w!.height, t!.width, t!.height], [300, 200, 150, 240]);
  assert.equal(w!.data.length, 300 * 200 * 3);
  const wideAlpha = Uint8Array.from({ length: 300 * 200 }, (_, i) => wide.data[4 * i + 3]!);
  assert.deepEqual(w!.alpha, wideAlpha, 'alpha comes back unchanged at the input size');
  const single = await model.restore(wide);
  assert.deepEqual(compare(single, w!), { differ: 0, max: 0 });
  // With size, the longer side is `size` and the alpha is resized to match.
  const sized = await model.restore(wide, { size: 150 });
  assert.deepEqual([sized.width, sized.height, sized.alpha?.length], [150, 100, 150 * 100]);
  // A result with its alpha can be fed back in and keeps the alpha.
  const again = await model.restore(sized);
  assert.deepEqual(again.alpha, sized.alpha);
});

test('load: a dtype other than the directory holds is refused, naming both and how to convert', { skip }, async () => {
  await assert.rejects(OSDFace.load(modelDir, { dtype: 'int8' }), (e: Error) => {
    assert.match(e.message, /holds fp32 weights, not int8/);
    assert.ok(e instanceof ModelDirError, `a ModelDirError like the other model directory errors: ${e.name}`);
    assert.match(e.message, /npx osdface convert --sd .*parity-a.sd --osdface .*parity-a.osdface --dtype int8 --calibration <folder of aligned face crops> -o/);
    assert.ok(e.message.startsWith(modelDir), e.message);
    return true;
  });
  const same = await OSDFace.load(modelDir, { dtype: 'fp32' });
  assert.equal(same.manifest.dtype, 'fp32');
  await same.dispose();
});

test('load: a folder that is not a converted model says how to convert one', { skip }, async () => {
  const empty = fs.mkdtempSync(path.join(work, 'empty-'));
  await assert.rejects(OSDFace.load(empty), (e: Error) => e instanceof ModelDirError && /no manifest\.json/.test(e.message) && /npx osdface convert/.test(e.message));
  await assert.rejects(OSDFace.load(path.join(work, 'missing')), (e: Error) => e instanceof ModelDirError && /does not exist/.test(e.message));
  await assert.rejects(OSDFace.load(modelDir, { threads: 0 }), /threads must be a positive integer/);
});

test('restore: bad input and bad options fail clearly', { skip }, async () => {
  await assert.rejects(model.restore(Buffer.from('not an image')), (e: Error) => e instanceof ImageError && /cannot read image/.test(e.message));
  await assert.rejects(model.restore(path.join(work, 'nope.png')), (e: Error) => e instanceof ImageError && e.message.includes('nope.png: cannot read image: file does not exist'));
  await assert.rejects(model.restore(faces[0]!, { seed: 3 }), /seed is only used with latent: 'sample'/);
  await assert.rejects(model.restore(faces[0]!, { size: 0 }), /size must be a positive integer/);
  await assert.rejects(model.restore([faces[0]!, faces[1]!], { latent: 'sample', seed: [1] }), /1 seeds for 2 images/);
  assert.deepEqual(await model.restore([]), []);
});

test('dispose: waits for a restore in flight, then restore fails with a clear error', { skip }, async () => {
  const m = await OSDFace.load(modelDir, { threads: 1 });
  const running = m.restore(faces[2]!);
  await m.dispose();
  const out = await running;
  assert.equal(out.width, 512);
  await assert.rejects(m.restore(faces[2]!), /was disposed; load it again with OSDFace\.load/);
  await m.dispose(); // a second dispose is harmless
});

test('load: lowMemory (UNet loaded per call, the default of large fp32 models) and lowMemory: false restore the same pixels, call after call', { skip }, async () => {
  const kept = await OSDFace.load(modelDir, { threads: 2, lowMemory: false });
  const perCall = await OSDFace.load(modelDir, { threads: 2, lowMemory: true });
  try {
    const expected = await perCall.restore([faces[0]!, faces[1]!]);
    const got = await kept.restore([faces[0]!, faces[1]!]);
    assert.deepEqual(compare(got[0]!, expected[0]!), { differ: 0, max: 0 });
    assert.deepEqual(compare(got[1]!, expected[1]!), { differ: 0, max: 0 });
    assert.deepEqual(compare(await kept.restore(faces[0]!), expected[0]!), { differ: 0, max: 0 });
  } finally {
    await kept.dispose();
    await perCall.dispose();
  }
});
