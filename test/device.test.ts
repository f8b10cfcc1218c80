/**
 * The device choice (src/graph/device.ts): `OSDFace.load(dir, { device })` and `restore --device`.
 * This machine has no GPU and osdface installs onnxruntime-node without its CUDA provider, so
 * 'cuda' is tested on its error path: a DeviceError (exit 2 on the command line) that says how to
 * install the provider, with a command that points at this installation's real install script.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { OSDFace, DeviceError } from '../src/index.js';
import { CUDA_PROVIDER_FILES, cudaInstallCommand, cudaUnavailableReason, deviceLoadError, executionProvidersFor, ortBinaryDir } from '../src/graph/device.js';
import { defaultModelDir } from '../src/pipeline/default_model.js';
import { repoRoot, shared, tempDir } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const FACE = path.join(shared, 'data/real-lq/codeformer-gray_067_David_Beckham_00.png');
/** null on an installation that has the CUDA provider (then the error path cannot be tested). */
const cudaMissing = cudaUnavailableReason();
const skipUnlessMissing = cudaMissing === null ? 'the CUDA provider is installed here' : false;

test('the install command names onnxruntime-node\'s own install script, which knows cuda12', () => {
  const cmd = cudaInstallCommand();
  const m = /^ONNXRUNTIME_NODE_INSTALL=cuda12 node (\S+)$/.exec(cmd);
  assert.ok(m, cmd);
  assert.ok(fs.existsSync(m[1]!), `${m[1]} should exist`);
  // the script reads that variable first, and its metadata has a cuda12 manifest with our two files
  const metadata = fs.readFileSync(path.join(path.dirname(m[1]!), 'install-metadata.js'), 'utf8');
  assert.match(metadata, /'linux\/x64:cuda12'/);
  for (const f of CUDA_PROVIDER_FILES) assert.ok(metadata.includes(`./${f}`), f);
  assert.match(fs.readFileSync(path.join(path.dirname(m[1]!), 'install-utils.js'), 'utf8'), /process\.env\.ONNXRUNTIME_NODE_INSTALL/);
});

test('CUDA counts as installed exactly when both provider libraries are beside the binding', { skip: process.platform !== 'linux' || process.arch !== 'x64' ? 'CUDA is Linux x64 only' : false }, (t) => {
  const bin = tempDir(t, 'osdface-ortbin-');
  assert.match(cudaUnavailableReason(bin)!, /CUDA execution provider is not installed \(libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing/);
  fs.writeFileSync(path.join(bin, CUDA_PROVIDER_FILES[0]), '');
  assert.match(cudaUnavailableReason(bin)!, /\(libonnxruntime_providers_cuda\.so missing/);
  fs.writeFileSync(path.join(bin, CUDA_PROVIDER_FILES[1]), '');
  assert.equal(cudaUnavailableReason(bin), null);
  assert.equal(path.basename(ortBinaryDir()), process.arch);
});

test('cpu runs on the CPU provider; cuda without its provider is a DeviceError saying how to install it', { skip: skipUnlessMissing }, () => {
  assert.deepEqual(executionProvidersFor('cpu'), ['cpu']);
  assert.throws(() => executionProvidersFor('cuda'), (e: unknown) => {
    assert.ok(e instanceof DeviceError);
    assert.equal(e.device, 'cuda');
    assert.ok(e.message.startsWith("device 'cuda': onnxruntime-node's CUDA execution provider is not installed"), e.message);
    assert.ok(e.message.includes(cudaInstallCommand()), e.message);
    assert.match(e.message, /CUDA 12 and cuDNN 9/);
    assert.match(e.message, /Or use device 'cpu'$/);
    return true;
  });
});

test("OSDFace.load(dir, { device: 'cuda' }) rejects with the DeviceError; 'cpu' loads and restores; other values are a RangeError", { skip: skipUnlessMissing }, async () => {
  const dir = defaultModelDir();
  await assert.rejects(OSDFace.load(dir, { device: 'cuda' }), (e: unknown) => e instanceof DeviceError && e.message.includes(cudaInstallCommand()));
  await assert.rejects(OSDFace.load(dir, { device: 'tpu' as never }), /OSDFace\.load: device must be one of 'cpu', 'cuda', got tpu/);
  const model = await OSDFace.load(dir, { device: 'cpu', threads: 2 });
  try {
    const face = await sharp(FACE).resize(64, 64).png().toBuffer();
    const out = await model.restore(face);
    assert.equal(out.width, 64);
  } finally {
    await model.dispose();
  }
});

test('a CUDA failure while loading becomes a DeviceError; other failures pass through', () => {
  const cudaFail = new Error('Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file');
  const mapped = deviceLoadError('cuda', cudaFail);
  assert.ok(mapped instanceof DeviceError);
  assert.match(mapped.message, /the CUDA execution provider failed to start \(Failed to load library .*libcublasLt\.so\.12.*\); it needs an NVIDIA GPU/);
  const other = new Error('unet.onnx is missing');
  assert.equal(deviceLoadError('cuda', other), other);
  assert.equal(deviceLoadError('cpu', cudaFail), cudaFail);
});

test('restore --device cuda: exit 2 with the install command, nothing written', { skip: skipUnlessMissing }, (t) => {
  const out = path.join(tempDir(t), 'out');
  const r = spawnSync(process.execPath, [cli, 'restore', FACE, '--aligned', '--device', 'cuda', '-o', out], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /osdface restore: device 'cuda': onnxruntime-node's CUDA execution provider is not installed/);
  assert.ok(r.stderr.includes(cudaInstallCommand()), r.stderr);
  assert.ok(!fs.existsSync(path.join(out, path.basename(FACE))), 'no output for a model that did not load');
});

test('restore --device tpu: usage error (exit 2); --device cpu restores; --help documents --device', (t) => {
  const out = path.join(tempDir(t), 'out');
  const bad = spawnSync(process.execPath, [cli, 'restore', FACE, '--aligned', '--device', 'tpu', '-o', out], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /osdface restore: --device must be one of cpu, cuda, got 'tpu'\nRun 'osdface restore --help'/);
  const ok = spawnSync(process.execPath, [cli, 'restore', FACE, '--aligned', '--size', '64', '--device', 'cpu', '--threads', '2', '-o', out], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(fs.existsSync(path.join(out, path.basename(FACE))));
  const help = spawnSync(process.execPath, [cli, 'restore', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--device cpu\|cuda {6}where the networks run \(default cpu\)/);
});
