import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { taef2Fixture, taef2Weights } from './helpers.js';
import { AutoencoderTiny, TAEF2_CONFIG } from '../src/models/autoencoder_tiny.js';
import { Config } from '../src/models/config.js';
import { vaeDecoderGraph, vaeEncoderGraph } from '../src/pipeline/graphs.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { bindWeights } from '../src/weights/bind.js';
import { taef2Store } from '../src/weights/taesd.js';
import { compareTensor } from '../src/pipeline/parity.js';
import { type FloatTensor, floatTensor } from '../src/tensor.js';

const skip = fs.existsSync(taef2Fixture) && fs.existsSync(taef2Weights) ? false : `TAEF2 weights or fixture not found beside the repository (${taef2Fixture})`;

test('TAEF2 port matches the reference PyTorch outputs (encoder and decoder, square, odd and non-square sizes)', { skip }, async () => {
  const vae = new AutoencoderTiny(new Config(TAEF2_CONFIG, 'TAEF2_CONFIG'));
  assert.equal(vae.namedParameters().filter(([k]) => k.startsWith('encoder.')).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0), 1_338_528);
  assert.equal(vae.namedParameters().filter(([k]) => k.startsWith('decoder.')).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0), 1_338_499);
  const weights = bindWeights(taef2Store(taef2Weights), vae.namedParameters());
  const enc = await OnnxSession.create(emitOnnx(vaeEncoderGraph(vae), { weights }));
  const dec = await OnnxSession.create(emitOnnx(vaeDecoderGraph(vae), { weights }));
  const io = SafetensorsFile.open(path.join(taef2Fixture, 'io.safetensors'));
  const read = (k: string) => io.read(k) as FloatTensor;
  // TAESD works in [0, 1]; AutoencoderTiny (like diffusers') takes and returns [-1, 1].
  const encode = async (image: FloatTensor) => (await enc.run({ image: floatTensor(image.shape, image.data.map((v) => v * 2 - 1)) })).latent as FloatTensor;
  const decode = async (latent: FloatTensor) => {
    const out = (await dec.run({ latent })).image as FloatTensor;
    return floatTensor(out.shape, out.data.map((v) => (v + 1) / 2));
  };
  const rows = [
    compareTensor('latent', await encode(read('image')), read('latent')),
    compareTensor('decoded', await decode(read('latent')), read('decoded')),
    compareTensor('decoded_random', await decode(read('latent_random')), read('decoded_random')),
    compareTensor('latent_odd', await encode(read('image_odd')), read('latent_odd')),
  ];
  io.close();
  await enc.release();
  await dec.release();
  for (const r of rows) assert.ok(r.pass, `${r.name}: max error ${r.maxAbsError} > tolerance ${r.tolerance} (max |ref| ${r.maxAbsRef})`);
});
