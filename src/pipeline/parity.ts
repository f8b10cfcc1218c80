/**
 * Stage-by-stage comparison against reference outputs stored in a fixture directory laid out
 * like the official release (sd/, osdface/, io.safetensors). Inputs come from the fixture;
 * every output it holds that we know how to produce is recomputed and compared.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SafetensorsFile } from '../weights/safetensors.js';
import { WeightFileError } from '../weights/errors.js';
import { type FloatTensor, type Tensor, shapeStr } from '../tensor.js';
import { loadRelease } from './release.js';
import { pipelineFromRelease } from './from_release.js';
import { runGradParity } from './grad_parity.js';
import type { RuntimeOptions } from '../graph/runtime.js';

export interface ParityRow {
  name: string;
  shape: number[];
  maxAbsError: number;
  maxAbsRef: number;
  /** 1e-4 * max|ref| + 1e-5 for floats; 0 (exact) for code indices. */
  tolerance: number;
  pass: boolean;
  note?: string;
}

export interface ParityReport {
  fixture: string;
  rows: ParityRow[];
  /** Tensors in io.safetensors that are inputs or that no stage here produces. */
  notChecked: string[];
  pass: boolean;
}

const INPUTS = new Set(['pipeline.lq', 'pipeline.eps', 'unet.sample', 'unet.encoder_hidden_states', 'unet.timestep', 'vae.image', 'vae.latent', 'vre.input']);

export function compareTensor(name: string, got: Tensor, want: Tensor): ParityRow {
  if (shapeStr(got.shape) !== shapeStr(want.shape)) {
    return { name, shape: want.shape, maxAbsError: Infinity, maxAbsRef: NaN, tolerance: 0, pass: false, note: `shape ${shapeStr(got.shape)}, reference ${shapeStr(want.shape)}` };
  }
  if (want.dtype === 'int64') {
    const a = got.data as BigInt64Array;
    const b = want.data as BigInt64Array;
    let mismatches = 0;
    let maxRef = 0;
    for (let i = 0; i < b.length; i++) {
      if (a[i] !== b[i]) mismatches++;
      maxRef = Math.max(maxRef, Math.abs(Number(b[i])));
    }
    return { name, shape: want.shape, maxAbsError: mismatches, maxAbsRef: maxRef, tolerance: 0, pass: mismatches === 0, note: mismatches ? `${mismatches} indices differ` : 'exact' };
  }
  const a = got.data as Float32Array;
  const b = want.data as Float32Array;
  let err = 0;
  let ref = 0;
  let bad = false;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    if (Number.isNaN(a[i]!)) bad = true;
    ref = Math.max(ref, Math.abs(b[i]!));
  }
  const tolerance = 1e-4 * ref + 1e-5;
  return { name, shape: want.shape, maxAbsError: err, maxAbsRef: ref, tolerance, pass: !bad && err <= tolerance };
}

export interface ParityOptions {
  /** Also check grad.safetensors when the fixture has one (default true). */
  gradients?: boolean;
}

export async function runParity(dir: string, runtime: RuntimeOptions = {}, opts: ParityOptions = {}): Promise<ParityReport> {
  const ioFile = path.join(dir, 'io.safetensors');
  if (!fs.existsSync(ioFile)) throw new WeightFileError(ioFile, 'fixture file does not exist', { hint: 'a parity fixture holds sd/, osdface/ and io.safetensors' });
  const io = SafetensorsFile.open(ioFile);
  const ref = (k: string) => (io.has(k) ? io.read(k) : undefined);
  const results = new Map<string, Tensor>();
  const sd = path.join(dir, 'sd');
  const osd = path.join(dir, 'osdface');
  try {
    const release = loadRelease(sd, osd);
    const pipe = await pipelineFromRelease(release, runtime);
    try {
      const acp = ref('scheduler.alphas_cumprod');
      if (acp) results.set('scheduler.alphas_cumprod', { dtype: 'float32', shape: [release.alphasCumprod.length], data: release.alphasCumprod });

      const vreInput = ref('vre.input') as FloatTensor | undefined;
      if (vreInput) {
        const v = await pipe.vre(vreInput);
        results.set('vre.quant_conv_out', v.z).set('vre.tokens', v.tokens).set('vre.indices', v.indices).set('vre.prompt', v.prompt);
      }
      const vaeImage = ref('vae.image') as FloatTensor | undefined;
      if (vaeImage) {
        const { mean, logvar } = await pipe.encode(vaeImage);
        results.set('vae.latent_mean', mean).set('vae.latent_logvar', logvar!);
      }
      const vaeLatent = ref('vae.latent') as FloatTensor | undefined;
      if (vaeLatent) results.set('vae.decoded', await pipe.decode(vaeLatent));

      const sample = ref('unet.sample') as FloatTensor | undefined;
      const context = ref('unet.encoder_hidden_states') as FloatTensor | undefined;
      const t = ref('unet.timestep');
      if (sample && context) {
        const timestep = t ? Number((t.data as BigInt64Array)[0]) : release.timestep;
        results.set('unet.merged_out', await pipe.unet(sample, context, timestep));
        if (io.has('unet.base_out')) {
          const base = loadRelease(sd, osd, { noLora: true });
          const basePipe = await pipelineFromRelease(base, runtime);
          results.set('unet.base_out', await basePipe.unet(sample, context, timestep));
          await basePipe.dispose();
          base.close();
        }
      }

      const lq = ref('pipeline.lq') as FloatTensor | undefined;
      if (lq) {
        const eps = ref('pipeline.eps') as FloatTensor | undefined;
        for (const mode of ['mode', 'sample'] as const) {
          if (mode === 'sample' && !eps) continue;
          const r = await pipe.restore(lq, { latent: mode, eps });
          const shared: [string, Tensor][] = [['lq_processed', r.lqProcessed], ['vre_quant_conv_out', r.z], ['vre_tokens', r.tokens], ['vre_indices', r.indices], ['prompt', r.prompt]];
          if (mode === 'mode') for (const [k, v] of shared) results.set(`pipeline.${k}`, v);
          results.set(`pipeline.latent_${mode}`, r.latent).set(`pipeline.eps_pred_${mode}`, r.epsPred).set(`pipeline.x0_${mode}`, r.x0)
            .set(`pipeline.decoded_${mode}`, r.decoded).set(`pipeline.out_${mode}`, r.out);
        }
      }
    } finally {
      await pipe.dispose();
      release.close();
    }
    const rows: ParityRow[] = [];
    const notChecked: string[] = [];
    for (const k of io.keys().sort()) {
      const got = results.get(k);
      if (got) rows.push(compareTensor(k, got, io.read(k)));
      else notChecked.push(k);
    }
    if (opts.gradients ?? true) rows.push(...(await runGradParity(dir, io, runtime)));
    return { fixture: dir, rows, notChecked: notChecked.filter((k) => !INPUTS.has(k)), pass: rows.length > 0 && rows.every((r) => r.pass) };
  } finally {
    io.close();
  }
}
