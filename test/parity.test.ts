import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { parityA, repoRoot } from './helpers.js';
import { copyParityA } from './fixture-copy.js';
import { runParity, type ParityReport } from '../src/pipeline/parity.js';
import { SafetensorsFile, writeSafetensors } from '../src/weights/safetensors.js';

const cli = path.join(repoRoot, 'dist/src/cli/parity.js');

test('parity-a: every stage and every stored gradient matches the reference (1e-4*max|ref| + 1e-5 forward, 2e-4*max|ref| gradients; code indices exactly)', async () => {
  const report = await runParity(parityA);
  const failed = report.rows.filter((r) => !r.pass);
  assert.deepEqual(failed.map((r) => `${r.name}: ${r.maxAbsError} > ${r.tolerance} ${r.note ?? ''}`), []);
  const names = report.rows.map((r) => r.name);
  // Every stage the issue names is among the checked tensors.
  for (const n of ['vre.quant_conv_out', 'vre.tokens', 'vre.indices', 'vre.prompt', 'vae.latent_mean', 'vae.latent_logvar', 'vae.decoded',
    'unet.base_out', 'unet.merged_out', 'pipeline.out_mode', 'pipeline.out_sample', 'pipeline.vre_indices', 'scheduler.alphas_cumprod']) {
    assert.ok(names.includes(n), `${n} checked`);
  }
  // grad.safetensors: UNet with LoRA, VAE decoder and encoder, embedding_change, the stage-2 step.
  for (const n of ['grad.unet.d_sample', 'grad.unet.lora.unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight',
    'grad.vae.d_latent', 'grad.vae_enc.d_image', 'grad.embedding_change.d_tokens', 'grad.train.loss', 'grad.train.d_prompt',
    'grad.train.embedding_change.conv2.weight']) {
    assert.ok(names.includes(n), `${n} checked`);
  }
  assert.ok(names.filter((n) => n.startsWith('grad.')).length >= 700);
  assert.deepEqual(report.notChecked, []);
  assert.equal(report.pass, true);
});

test('parity CLI: table and exit 0 on parity-a, --json gives the same report', () => {
  const table = spawnSync(process.execPath, [cli, parityA, '--skip-grad'], { encoding: 'utf8' });
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, /vae\.decoded\s+\[2,3,64,64\]\s+\S+\s+\S+\s+\S+\s+pass/);
  assert.match(table.stdout, /^\d+ passed, 0 failed$/m);
  const json = spawnSync(process.execPath, [cli, parityA, '--json', '--skip-grad'], { encoding: 'utf8' });
  assert.equal(json.status, 0, json.stderr);
  const report = JSON.parse(json.stdout) as ParityReport;
  assert.equal(report.pass, true);
  assert.ok(report.rows.length >= 25);
});

test('parity CLI: a perturbed reference tensor fails, exit code 1, and names the tensor', () => {
  const dir = copyParityA();
  try {
    const io = SafetensorsFile.open(path.join(dir, 'io.safetensors'));
    const all = io.readAll();
    io.close();
    const decoded = all.get('vae.decoded')!;
    const data = Float32Array.from(decoded.data as Float32Array);
    data[17] = data[17]! + 0.01;
    all.set('vae.decoded', { ...decoded, data });
    const idx = all.get('vre.indices')!;
    const swapped = BigInt64Array.from(idx.data as BigInt64Array);
    [swapped[0], swapped[1]] = [swapped[1]!, swapped[0]!];
    all.set('vre.indices', { ...idx, data: swapped });
    writeSafetensors(path.join(dir, 'io.safetensors'), all);
    const r = spawnSync(process.execPath, [cli, dir, '--json', '--skip-grad'], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    const report = JSON.parse(r.stdout) as ParityReport;
    assert.deepEqual(report.rows.filter((x) => !x.pass).map((x) => x.name).sort(), ['vae.decoded', 'vre.indices']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('parity CLI: a directory without a fixture is a clear error, exit 2', () => {
  const r = spawnSync(process.execPath, [cli, path.join(repoRoot, 'no-such-fixture')], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no-such-fixture\/io\.safetensors: fixture file does not exist/);
});
