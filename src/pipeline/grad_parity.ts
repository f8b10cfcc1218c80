/**
 * Gradient parity: when a fixture holds grad.safetensors, differentiate our graphs (autodiff.ts)
 * the way the reference did with torch autograd and compare every gradient it stores.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { gradients } from '../graph/autodiff.js';
import { emitOnnx, type WeightSource } from '../graph/emit.js';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { readJsonObject } from '../weights/diffusers.js';
import { type FloatTensor, type Tensor, floatTensor } from '../tensor.js';
import { loadRelease, OSDFACE_FILES, RELEASE_DEFAULTS, type OSDFaceRelease } from './release.js';
import { pipelineFromRelease } from './from_release.js';
import { compareTensor, type ParityRow } from './parity.js';

const sumAll = (v: Value) => op.reduceSum(v, v.shape.map((_, i) => i), false);

interface GradCase {
  graph: Graph;
  weights: WeightSource;
  feeds: Record<string, Tensor>;
  /** Output name in the graph -> name in grad.safetensors. */
  expected: Map<string, string>;
}

/** Marks `v` as an output compared against `refName`. */
function expect(c: GradCase, v: Value, refName: string): void {
  const name = `out:${refName}`;
  c.graph.output(v, name);
  c.expected.set(name, refName);
}

function loraSetup(osdDir: string, release: OSDFaceRelease) {
  const file = SafetensorsFile.open(path.join(osdDir, OSDFACE_FILES.lora));
  const tensors = file.readAll();
  file.close();
  const targets = new Set<string>();
  let rank = 0;
  for (const [k, t] of tensors) {
    const m = /^unet\.(.+)\.lora_A\.weight$/.exec(k);
    if (m) {
      targets.add(m[1]!);
      rank = t.shape[0]!;
    }
  }
  const cfgFile = path.join(osdDir, OSDFACE_FILES.config);
  const cfg = fs.existsSync(cfgFile) ? readJsonObject(cfgFile) : {};
  const alpha = ((cfg['lora'] as Record<string, number> | undefined)?.['alpha']) ?? RELEASE_DEFAULTS.lora.alpha;
  const weights: WeightSource = {
    read: (key, shape) => {
      const t = tensors.get(`unet.${key}`);
      return t ? (t.data as Float32Array) : release.unet.weights.read(key, shape);
    },
  };
  return { lora: { rank, scale: alpha / rank, targets }, weights };
}

function newGraph(name: string): Graph {
  const g = new Graph(name);
  g.fusedAttention = false;
  return g;
}

async function runCase(c: GradCase, grad: SafetensorsFile, runtime: RuntimeOptions): Promise<ParityRow[]> {
  const s = await OnnxSession.create(emitOnnx(c.graph, { weights: c.weights }), runtime);
  try {
    const out = await s.run(c.feeds);
    const rows: ParityRow[] = [];
    for (const [name, ref] of c.expected) {
      const want = grad.read(ref);
      const row = compareTensor(ref, out[name]!, want);
      // The fixture's rule for gradients: |got - want| <= 2e-4 * max|want|; losses: relative 1e-4.
      row.tolerance = want.shape.length === 0 ? 1e-4 * row.maxAbsRef : 2e-4 * row.maxAbsRef;
      row.pass = row.maxAbsError <= row.tolerance;
      rows.push(row);
    }
    return rows;
  } finally {
    await s.release();
  }
}

export async function runGradParity(dir: string, io: SafetensorsFile, runtime: RuntimeOptions = {}): Promise<ParityRow[]> {
  const gradFile = path.join(dir, 'grad.safetensors');
  if (!fs.existsSync(gradFile)) return [];
  const grad = SafetensorsFile.open(gradFile);
  const sd = path.join(dir, 'sd');
  const osd = path.join(dir, 'osdface');
  const release = loadRelease(sd, osd, { noLora: true });
  const rows: ParityRow[] = [];
  const has = (k: string) => grad.has(k);
  const ioF = (k: string) => io.read(k) as FloatTensor;
  const gF = (k: string) => grad.read(k) as FloatTensor;
  try {
    const { lora, weights: unetWeights } = loraSetup(osd, release);
    const timestep = floatTensor([1], Float32Array.of(release.timestep));
    const unet = release.unet.module;
    const vae = release.vae.module;
    const ec = release.embeddingChange.module;

    if (has('grad.unet.loss')) {
      const g = newGraph('unet_grad');
      g.lora = lora;
      const sample = g.input('sample', 'float32', io.info('unet.sample').shape);
      const t = g.input('timestep', 'float32', [1]);
      const ctx = g.input('encoder_hidden_states', 'float32', io.info('unet.encoder_hidden_states').shape);
      const cot = g.input('cotangent', 'float32', grad.info('grad.unet.cotangent').shape);
      const loss = sumAll(op.mul(cot, unet.forward(g, sample, t, ctx)));
      const loraKeys = [...g.params.keys()].filter((k) => /\.lora_[AB]\.weight$/.test(k));
      const wrt = [sample, ctx, ...loraKeys.map((k) => g.params.get(k)!)];
      const grads = gradients(g, loss, wrt);
      const c: GradCase = { graph: g, weights: unetWeights, expected: new Map(), feeds: { sample: ioF('unet.sample'), timestep, encoder_hidden_states: ioF('unet.encoder_hidden_states'), cotangent: gF('grad.unet.cotangent') } };
      expect(c, loss, 'grad.unet.loss');
      expect(c, grads[0]!, 'grad.unet.d_sample');
      expect(c, grads[1]!, 'grad.unet.d_encoder_hidden_states');
      loraKeys.forEach((k, i) => expect(c, grads[i + 2]!, `grad.unet.lora.unet.${k}`));
      rows.push(...(await runCase(c, grad, runtime)));
    }

    /**
     * L = sum(cotangent * forward(input)): gradients with respect to the input and to every parameter
     * the fixture lists under `<prefix>.param.` (or the given keys).
     */
    const cotangentCase = async (prefix: string, ioInput: string, inputName: string, dName: string, weights: WeightSource,
      forward: (g: Graph, x: Value) => Value, paramKeys?: string[]) => {
      if (!has(`${prefix}.loss`)) return;
      const g = newGraph(`${prefix}_grad`);
      const x = g.input(inputName, 'float32', io.info(ioInput).shape);
      const cot = g.input('cotangent', 'float32', grad.info(`${prefix}.cotangent`).shape);
      const loss = sumAll(op.mul(cot, forward(g, x)));
      const listed = `${prefix}.param.`;
      const keys = paramKeys ?? grad.keys().filter((k) => k.startsWith(listed)).map((k) => k.slice(listed.length));
      const grads = gradients(g, loss, [x, ...keys.map((k) => g.params.get(k)!)]);
      const c: GradCase = { graph: g, weights, expected: new Map(), feeds: { [inputName]: ioF(ioInput), cotangent: gF(`${prefix}.cotangent`) } };
      expect(c, loss, `${prefix}.loss`);
      expect(c, grads[0]!, `${prefix}.${dName}`);
      keys.forEach((k, i) => expect(c, grads[i + 1]!, `${prefix}.param.${k}`));
      rows.push(...(await runCase(c, grad, runtime)));
    };
    await cotangentCase('grad.vae', 'vae.latent', 'latent', 'd_latent', release.vae.weights, (g, z) => vae.decode(g, z));
    await cotangentCase('grad.vae_enc', 'vae.image', 'image', 'd_image', release.vae.weights, (g, x) => vae.encode(g, x).mean);
    await cotangentCase('grad.embedding_change', 'vre.tokens', 'tokens', 'd_tokens', release.embeddingChange.weights,
      (g, t) => ec.forward(g, t), ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias']);

    if (has('grad.train.loss')) rows.push(...(await trainStep(release, lora, unetWeights, io, grad, runtime)));
  } finally {
    release.close();
    grad.close();
  }
  return rows;
}

/** The stage-2 step: LoRA UNet + embedding_change trainable, VAE and VRE frozen, MSE to an HQ target. */
async function trainStep(
  release: OSDFaceRelease, lora: Graph['lora'], unetWeights: WeightSource, io: SafetensorsFile, grad: SafetensorsFile, runtime: RuntimeOptions,
): Promise<ParityRow[]> {
  const f = Math.fround;
  const lq = io.read('pipeline.lq') as FloatTensor;
  const [, c, h, w] = lq.shape as [number, number, number, number];
  const first = floatTensor([1, c, h, w], lq.data.slice(0, c * h * w));
  // The frozen forward pieces come from our own (inference) pipeline.
  const pipe = await pipelineFromRelease(release, runtime);
  let tokens: FloatTensor;
  let latent: FloatTensor;
  try {
    const x = await pipe.preprocess(first);
    tokens = (await pipe.vre(x)).tokens;
    const { mean } = await pipe.encode(x);
    latent = floatTensor(mean.shape, mean.data.map((v) => f(v * release.vae.module.scalingFactor)));
  } finally {
    await pipe.dispose();
  }
  const g = newGraph('train_step_grad');
  g.lora = lora;
  const tokensIn = g.input('tokens', 'float32', tokens.shape);
  const latentIn = g.input('latent', 'float32', latent.shape);
  const hq = g.input('hq', 'float32', grad.info('grad.train.hq').shape);
  const t = g.input('timestep', 'float32', [1]);
  const prompt = release.embeddingChange.module.forward(g, tokensIn);
  const eps = release.unet.module.forward(g, latentIn, t, prompt);
  const a = release.alphasCumprod[release.timestep]!;
  const x0 = op.div(op.sub(latentIn, op.mul(eps, f(Math.sqrt(f(1 - a))))), f(Math.sqrt(a)));
  const decoded = release.vae.module.decode(g, op.div(x0, release.vae.module.scalingFactor));
  const diff = op.sub(decoded, hq);
  const loss = op.reduceMean(op.mul(diff, diff), decoded.shape.map((_, i) => i), false);
  const loraKeys = [...g.params.keys()].filter((k) => /\.lora_[AB]\.weight$/.test(k));
  const ecKeys = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias'];
  const grads = gradients(g, loss, [x0, eps, prompt, ...loraKeys.map((k) => g.params.get(k)!), ...ecKeys.map((k) => g.params.get(k)!)]);
  const weights: WeightSource = {
    read: (key, shape) => (ecKeys.includes(key) ? release.embeddingChange.weights.read(key, shape)
      : key.startsWith('decoder.') || key.startsWith('post_quant_conv.') ? release.vae.weights.read(key, shape) : unetWeights.read(key, shape)),
  };
  const cs: GradCase = {
    graph: g, weights, expected: new Map(),
    feeds: { tokens, latent, hq: grad.read('grad.train.hq'), timestep: floatTensor([1], Float32Array.of(release.timestep)) },
  };
  expect(cs, loss, 'grad.train.loss');
  expect(cs, prompt, 'grad.train.prompt');
  expect(cs, latentIn, 'grad.train.latent');
  expect(cs, eps, 'grad.train.eps_pred');
  expect(cs, x0, 'grad.train.x0');
  expect(cs, decoded, 'grad.train.decoded');
  expect(cs, grads[0]!, 'grad.train.d_x0');
  expect(cs, grads[1]!, 'grad.train.d_eps_pred');
  expect(cs, grads[2]!, 'grad.train.d_prompt');
  loraKeys.forEach((k, i) => expect(cs, grads[3 + i]!, `grad.train.lora.unet.${k}`));
  ecKeys.forEach((k, i) => expect(cs, grads[3 + loraKeys.length + i]!, `grad.train.embedding_change.${k}`));
  return runCase(cs, grad, runtime);
}
