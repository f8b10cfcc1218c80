/**
 * int8: the QDQ rewrite of convolutions (src/graph/quantize.ts) and int8 model directories
 * (src/pipeline/quantize_model.ts), on the tiny parity-a model and real face crops.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Graph } from '../src/graph/ir.js';
import * as op from '../src/graph/ops.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import {
  activationQuant, addRangeProbes, calibrationValues, foldWeightExpression, mergeRanges, quantizeGraph, quantizeWeight, type Ranges,
} from '../src/graph/quantize.js';
import { loadRelease, type OSDFaceRelease } from '../src/pipeline/release.js';
import { vaeDecoderGraph } from '../src/pipeline/graphs.js';
import { gaussianNoise } from '../src/pipeline/random.js';
import { OSDFace, type RestoredImage } from '../src/index.js';
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import { convertParityA, noFixtures, parityA, realLq, repoRoot, shared } from './helpers.js';

const train = path.join(shared, 'data/faces-hq/train');
const skip = noFixtures || (fs.existsSync(train) && fs.existsSync(realLq) ? false : `face images not found in ${shared}/data`);
const pngs = (dir: string) => (skip ? [] : fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort().map((f) => path.join(dir, f)));

let release: OSDFaceRelease;
let work = '';
before(() => {
  if (skip) return;
  release = loadRelease(path.join(parityA, 'sd'), path.join(parityA, 'osdface'));
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-int8-'));
});
after(() => {
  release?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('weights: symmetric per output channel, every value within half a step', () => {
  const w = Float32Array.from({ length: 2 * 18 }, (_, i) => (i < 18 ? Math.sin(i) * 0.3 : Math.cos(i) * 5));
  const { q, scales } = quantizeWeight(w, [2, 18]);
  assert.ok(Math.abs(scales[0]! - 0.3 * Math.max(...Array.from({ length: 18 }, (_, i) => Math.abs(Math.sin(i)))) / 127) < 1e-7);
  for (let i = 0; i < w.length; i++) {
    const s = scales[i < 18 ? 0 : 1]!;
    assert.ok(Math.abs(q[i]! * s - w[i]!) <= s / 2 + 1e-7, `weight ${i}`);
  }
  assert.equal(Math.max(...Array.from(q, Math.abs)), 127);
  // An all-zero channel must not divide by zero.
  assert.deepEqual(Array.from(quantizeWeight(new Float32Array(4), [1, 4]).q), [0, 0, 0, 0]);
});

test('weights of a product (K, N): one scale per column', () => {
  const w = Float32Array.from([1, -20, 0.5, 10, -2, 5]); // rows of [a, b]: column maxima 2 and 20
  const { q, scales } = quantizeWeight(w, [3, 2], 1);
  assert.deepEqual(Array.from(scales), [2 / 127, 20 / 127].map(Math.fround));
  assert.deepEqual(Array.from(q), [64, -127, 32, 64, -127, 32]);
});

test('activations: the uint8 grid covers the range and holds zero exactly', () => {
  for (const range of [[-0.28, 7.5], [0.5, 3], [-4, -1], [0, 0]] as [number, number][]) {
    const { scale, zeroPoint } = activationQuant(range);
    assert.ok(Number.isInteger(zeroPoint) && zeroPoint >= 0 && zeroPoint <= 255);
    // Rounding the zero point moves the grid by at most half a step.
    assert.ok((0 - zeroPoint) * scale <= Math.min(0, range[0]) + scale / 2 + 1e-6, `${range}: low end`);
    assert.ok((255 - zeroPoint) * scale >= Math.max(0, range[1]) - scale / 2 - 1e-6, `${range}: high end`);
  }
  const ranges: Ranges = {};
  mergeRanges(ranges, { 'range_min:a': { data: [-1] }, 'range_max:a': { data: [2] } });
  mergeRanges(ranges, { 'range_min:a': { data: [-0.5] }, 'range_max:a': { data: [3] } });
  assert.deepEqual(ranges, { a: [-1, 3] });
});

test('Upsample2D phase kernels folded on the host equal the ones ONNX Runtime computes', { skip }, async () => {
  const g = vaeDecoderGraph(release.vae.module);
  const phaseConvs = g.nodes.filter((n) => n.op === 'Conv' && n.scope.includes('upsamplers'));
  assert.ok(phaseConvs.length >= 4);
  for (const [i, n] of phaseConvs.entries()) g.output(n.inputs[1]!, `kernel_${i}`);
  const s = await OnnxSession.create(emitOnnx(g, { weights: release.vae.weights }));
  const out = await s.run({ latent: floatTensor([1, 4, 8, 8]) });
  await s.release();
  for (const [i, n] of phaseConvs.entries()) {
    const host = foldWeightExpression(g, n.inputs[1]!, release.vae.weights);
    assert.deepEqual(Array.from(host), Array.from(out[`kernel_${i}`]!.data as Float32Array), `kernel ${i}`);
  }
});

test('quantized VAE decoder: every conv but the 3/4-channel ones becomes QLinearConv and stays close to fp32', { skip }, async () => {
  const vae = release.vae.module;
  const latent = (seed: number): FloatTensor => floatTensor([1, 4, 16, 16], gaussianNoise(4 * 16 * 16, seed));
  const probed = vaeDecoderGraph(vae);
  const values = calibrationValues(probed);
  addRangeProbes(probed, values);
  const ps = await OnnxSession.create(emitOnnx(probed, { weights: release.vae.weights }));
  const ranges: Ranges = {};
  for (const seed of [1, 2, 3, 4]) mergeRanges(ranges, await ps.run({ latent: latent(seed) }) as Record<string, { data: ArrayLike<number> }>);
  await ps.release();
  assert.equal(Object.keys(ranges).length, values.length);

  const g = vaeDecoderGraph(vae);
  const convs = g.nodes.filter((n) => n.op === 'Conv').length;
  const { weights, quantized } = quantizeGraph(g, ranges, release.vae.weights);
  // post_quant_conv (4 -> 4), conv_in (4 -> 32) and conv_out (16 -> 3) stay fp32.
  assert.equal(quantized.conv, convs - 3);
  // The mid-block attention's q/k/v/out projections (32 x 32 here).
  assert.equal(quantized.matmul, 4);
  assert.ok([...g.params.values()].some((p) => p.dtype === 'int8'));
  assert.ok(![...g.params.keys()].some((k) => k.endsWith('upsamplers.0.conv.weight')), 'folded fp32 kernels are not kept');
  // GroupNorm reads the shape of quantized conv outputs: from the uint8 copy, not a dequantized one.
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const shapeReads = g.nodes.filter((n) => n.op === 'Shape').map((n) => producer.get(n.inputs[0]!)?.op);
  assert.ok(shapeReads.includes('QuantizeLinear'), 'some Shape reads a quantized value');
  assert.ok(!shapeReads.includes('DequantizeLinear'), 'no Shape reads a dequantized copy');

  const optimizedFile = path.join(work, 'decoder.int8.optimized.onnx');
  const qs = await OnnxSession.create(emitOnnx(g, { weights }), { saveOptimizedTo: optimizedFile });
  const fp = await OnnxSession.create(emitOnnx(vaeDecoderGraph(vae), { weights: release.vae.weights }));
  const bytes = fs.readFileSync(optimizedFile);
  const count = (needle: string) => bytes.toString('latin1').split(needle).length - 1;
  assert.ok(count('QLinearConv') >= quantized.conv, `ONNX Runtime fused ${count('QLinearConv')} of ${quantized.conv} convs into QLinearConv`);
  assert.ok(count('MatMulIntegerToFloat') >= quantized.matmul, `ONNX Runtime fused ${count('MatMulIntegerToFloat')} of ${quantized.matmul} products into MatMulIntegerToFloat`);

  const x = latent(99);
  const a = (await fp.run({ latent: x })).image!.data as Float32Array;
  const b = (await qs.run({ latent: x })).image!.data as Float32Array;
  await qs.release();
  await fp.release();
  let se = 0;
  let peak = 0;
  for (let i = 0; i < a.length; i++) {
    se += (a[i]! - b[i]!) ** 2;
    peak = Math.max(peak, Math.abs(a[i]!));
  }
  const rmse = Math.sqrt(se / a.length);
  // Measured: 0.017 on outputs up to 1.7. A wrong scale, zero point or kernel gives 0.2 or more.
  assert.ok(rmse < 0.05 && rmse > 0, `rmse ${rmse} (peak ${peak})`);
});

test('a conv with a float-valued weight expression it cannot fold is left in fp32', () => {
  const g = new Graph('t');
  const x = g.input('x', 'float32', [1, 16, 4, 4]);
  const w = op.mul(g.param('w', [16, 16, 3, 3]), 2);
  g.output(op.conv(x, w, null, { pads: [1, 1, 1, 1] }), 'y');
  assert.equal(calibrationValues(g).length, 0);
  assert.deepEqual(quantizeGraph(g, {}, { read: () => new Float32Array(16 * 16 * 9) }).quantized, { conv: 0, matmul: 0 });
});

function psnr(a: RestoredImage, b: RestoredImage): number {
  let se = 0;
  for (let i = 0; i < a.data.length; i++) se += (a.data[i]! - b.data[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (se / a.data.length));
}

test('int8 model directory: converted with calibration, loads as int8, restores close to fp32', { skip }, async () => {
  const fp32Dir = path.join(work, 'fp32');
  const int8Dir = path.join(work, 'int8');
  await convertParityA(fp32Dir);
  const steps: string[] = [];
  const manifest = await convertParityA(int8Dir, { dtype: 'int8', calibration: pngs(train).slice(0, 4), onProgress: (s) => steps.push(s) });
  assert.equal(manifest.dtype, 'int8');
  assert.equal(manifest.quantization?.calibrationImages, 4);
  assert.ok(steps.filter((s) => s.startsWith('calibrating')).length === 4);
  for (const stage of ['vaeEncoder', 'unet', 'vaeDecoder'] as const) {
    assert.match(manifest.graphs[stage], /\.int8\.onnx$/);
    assert.ok((manifest.quantization?.quantized[stage]?.conv ?? 0) > 0, stage);
  }
  assert.ok(!fs.existsSync(path.join(int8Dir, 'unet.onnx')), 'the fp32 UNet is not kept');
  assert.ok(fs.existsSync(path.join(int8Dir, 'vae_decoder.onnx')), 'the fp32 VAE is kept for tiling');
  assert.deepEqual(fs.readdirSync(work).filter((n) => n.includes('partial')), []);

  const a = await OSDFace.load(fp32Dir, { threads: 2 });
  const b = await OSDFace.load(int8Dir, { dtype: 'int8', threads: 2 });
  try {
    for (const face of pngs(realLq).slice(0, 2)) {
      const x = await a.restore(face);
      const y = await b.restore(face);
      const p = psnr(x, y);
      // Measured 32-34 dB on this random tiny model; a broken quantization lands far below 20 dB.
      assert.ok(p > 25 && p < 60, `${path.basename(face)}: int8 vs fp32 PSNR ${p.toFixed(2)} dB`);
    }
  } finally {
    await a.dispose();
    await b.dispose();
  }
  await assert.rejects(OSDFace.load(int8Dir, { dtype: 'fp32' }), /holds int8 weights, not fp32/);
  await assert.rejects(OSDFace.load(fp32Dir, { dtype: 'int8' }), /holds fp32 weights, not int8/);
});

test('int8 conversion without calibration images is refused before anything is written', { skip }, async () => {
  const out = path.join(work, 'no-calibration');
  await assert.rejects(convertParityA(out, { dtype: 'int8' }), /calibrat/);
  assert.ok(!fs.existsSync(out));
  const cli = path.join(repoRoot, 'dist/src/cli/main.js');
  const r = spawnSync(process.execPath, [cli, 'convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', out, '--dtype', 'int8'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--calibration <folder>/);
  const r2 = spawnSync(process.execPath, [cli, 'convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', out, '--calibration', train], { encoding: 'utf8' });
  assert.equal(r2.status, 2, r2.stderr);
  assert.match(r2.stderr, /--calibration is for --dtype int8/);
  assert.ok(!fs.existsSync(out));
});
