import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { copyParityA, editJson } from './fixture-copy.js';
import { loadRelease } from '../src/pipeline/release.js';
import { SafetensorsFile, writeSafetensors } from '../src/weights/safetensors.js';

function withFixture(fn: (dir: string) => void): void {
  const dir = copyParityA();
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const load = (dir: string) => loadRelease(path.join(dir, 'sd'), path.join(dir, 'osdface')).close();

test('a missing SD folder names the folder', () => {
  withFixture((dir) => {
    fs.rmSync(path.join(dir, 'sd', 'vae'), { recursive: true });
    assert.throws(() => load(dir), (e: Error) => e.message.includes(path.join(dir, 'sd', 'vae')) && /SD-2\.1-base/.test(e.message));
  });
});

test('a missing OSDFace file names the file and what the folder must hold', () => {
  withFixture((dir) => {
    fs.rmSync(path.join(dir, 'osdface', 'associate_2.ckpt'));
    assert.throws(() => load(dir), /osdface\/associate_2\.ckpt: VRE checkpoint does not exist.*pytorch_lora_weights\.safetensors/);
  });
});

test('a config that does not fit the weights names the weight file, the key, expected and found shapes', () => {
  withFixture((dir) => {
    editJson(path.join(dir, 'sd/unet/config.json'), (j) => { j['cross_attention_dim'] = 64; });
    assert.throws(() => load(dir), (e: Error) =>
      e.message.startsWith(path.join(dir, 'sd/unet/diffusion_pytorch_model.safetensors')) &&
      /'down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight'.*expected shape \[32, 64\], found shape \[32, 48\]/.test(e.message));
  });
});

test('a VRE config asking for tensors the checkpoint lacks names the checkpoint and the first missing key', () => {
  withFixture((dir) => {
    editJson(path.join(dir, 'osdface/config.json'), (j) => { (j['vre'] as Record<string, unknown>)['attn_resolutions'] = [16, 32]; });
    assert.throws(() => load(dir), /associate_2\.ckpt: .*missing, first 'encoder\.down\.4\.attn\.0\.norm1\.weight'/);
  });
});

test('a LoRA key that matches no UNet weight names the LoRA file and the key', () => {
  withFixture((dir) => {
    const file = path.join(dir, 'osdface/pytorch_lora_weights.safetensors');
    const f = SafetensorsFile.open(file);
    const all = f.readAll();
    f.close();
    const a = all.get('unet.down_blocks.0.attentions.0.proj_in.lora_A.weight')!;
    const b = all.get('unet.down_blocks.0.attentions.0.proj_in.lora_B.weight')!;
    all.set('unet.down_blocks.0.attentions.0.proj_sideways.lora_A.weight', a);
    all.set('unet.down_blocks.0.attentions.0.proj_sideways.lora_B.weight', b);
    writeSafetensors(file, all);
    assert.throws(() => load(dir), (e: Error) => e.message.startsWith(file) && e.message.includes('proj_sideways'));
  });
});

test('a truncated weight file names the file', () => {
  withFixture((dir) => {
    const file = path.join(dir, 'sd/vae/diffusion_pytorch_model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 1000);
    assert.throws(() => load(dir), (e: Error) => e.message.startsWith(file));
  });
});

test('an unsupported UNet feature in config.json is refused with the file and key', () => {
  withFixture((dir) => {
    editJson(path.join(dir, 'sd/unet/config.json'), (j) => { j['class_embed_type'] = 'timestep'; });
    assert.throws(() => load(dir), /sd\/unet\/config\.json: 'class_embed_type' is not supported/);
  });
});
