/**
 * Seeded fuzzing of what reads untrusted bytes: the image decoder (what `osdface serve` feeds
 * every request body to) and the weight parsers (safetensors, torch zip checkpoints, legacy torch
 * pickles, which have no CRC to catch a flipped byte). Each case mutates a valid file (bit flips,
 * interesting byte and 32-bit values, truncation, inserted, deleted and repeated runs), biased
 * to the structure (headers, pickles, zip directories) rather than the tensor payload.
 *
 * The only outcomes allowed: the input is read, or the project's typed error (ImageError /
 * WeightFileError) naming the input. Any other exception fails with the seed and case number,
 * so the failure can be replayed. Everything runs in this process: a hang fails by the test timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImage, ImageError } from '../src/image/io.js';
import { SafetensorsFile, writeSafetensors } from '../src/weights/safetensors.js';
import { loadTorchCheckpoint } from '../src/weights/torch.js';
import { WeightFileError } from '../src/weights/errors.js';
import { floatTensor } from '../src/tensor.js';
import { parityA, shared, tempDir } from './helpers.js';

const SEED = 20261204;

/** mulberry32: a small seeded generator, so every run mutates the same way. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x2e, 0x28, 0x51, 0x52, 0x5d, 0x7d];
const INTERESTING32 = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe];

/**
 * One mutant of `src`. Positions fall in the structured regions (`hot`: [start, end) ranges)
 * three times out of four, anywhere otherwise.
 */
function mutate(src: Uint8Array, rand: () => number, hot: [number, number][]): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  const pos = (len: number) => {
    if (len === 0) return 0;
    if (hot.length > 0 && rand() < 0.75) {
      const [a, b] = hot[int(hot.length)]!;
      const lo = Math.min(a, len - 1);
      const hi = Math.max(lo + 1, Math.min(b, len));
      return lo + int(hi - lo);
    }
    return int(len);
  };
  let b = Buffer.from(src);
  const steps = 1 + int(3);
  for (let s = 0; s < steps; s++) {
    switch (int(8)) {
      case 0: case 1: { // bit flips
        const n = 1 + int(4);
        for (let k = 0; k < n && b.length > 0; k++) b[pos(b.length)] ^= 1 << int(8);
        break;
      }
      case 2: // an interesting byte
        if (b.length > 0) b[pos(b.length)] = INTERESTING8[int(INTERESTING8.length)]!;
        break;
      case 3: { // an interesting 32-bit value (lengths, counts, offsets)
        if (b.length >= 4) b.writeUInt32LE(INTERESTING32[int(INTERESTING32.length)]!, Math.min(pos(b.length), b.length - 4));
        break;
      }
      case 4: // truncation
        b = b.subarray(0, pos(b.length));
        break;
      case 5: { // insert random bytes
        const at = pos(b.length);
        const ins = Buffer.from(Array.from({ length: 1 + int(16) }, () => int(256)));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      case 6: { // delete a run
        const at = pos(b.length);
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(32)))]);
        break;
      }
      default: { // repeat a run
        const at = pos(b.length);
        const run = b.subarray(at, Math.min(b.length, at + 1 + int(64)));
        b = Buffer.concat([b.subarray(0, at), run, b.subarray(at)]);
      }
    }
  }
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Runs `cases` mutants of `seed` through `read`; anything but success or the allowed error fails with a replayable description. */
async function fuzz(name: string, seedBytes: Uint8Array, cases: number, hot: [number, number][], read: (bytes: Uint8Array) => unknown, allowed: (e: unknown) => boolean): Promise<{ ok: number; refused: number }> {
  const rand = rng(SEED ^ name.length * 7919);
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < cases; i++) {
    const bytes = mutate(seedBytes, rand, hot);
    try {
      await read(bytes);
      ok++;
    } catch (e) {
      if (!allowed(e)) {
        const head = Buffer.from(bytes.subarray(0, 64)).toString('hex');
        assert.fail(`${name} case ${i} (seed ${SEED}, ${bytes.length} bytes, head ${head}): ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`);
      }
      refused++;
    }
  }
  if (process.env.OSDFACE_FUZZ_VERBOSE) console.log(name, { ok, refused });
  return { ok, refused };
}

test('fuzz: the image decoder reads a mutated image or refuses it with an ImageError naming the input', { timeout: 300_000 }, async () => {
  const w = 40;
  const h = 32;
  const rgba = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set([(i * 7) % 256, (i * 13) % 256, (i * 29) % 256, 128 + (i % 128)], 4 * i);
  const raw = { raw: { width: w, height: h, channels: 4 as const } };
  const seeds: [string, Buffer][] = [
    ['png', await sharp(rgba, raw).png().toBuffer()],
    ['jpeg', await sharp(rgba, raw).removeAlpha().jpeg({ quality: 80 }).withMetadata({ orientation: 6 }).toBuffer()],
    ['webp', await sharp(rgba, raw).webp({ quality: 80 }).toBuffer()],
    ['gif', await sharp(rgba, raw).gif().toBuffer()],
    ['tiff', await sharp(rgba, raw).tiff().toBuffer()],
  ];
  const totals: Record<string, { ok: number; refused: number }> = {};
  for (const [fmt, bytes] of seeds) {
    totals[fmt] = await fuzz(`image-${fmt}`, bytes, 400, [[0, 256], [Math.max(0, bytes.length - 64), bytes.length]], async (b) => {
      const img = await decodeImage(b);
      assert.ok(img.width > 0 && img.height > 0 && img.data.length === img.width * img.height * 3, 'a decoded image is consistent');
    }, (e) => e instanceof ImageError && e.file === '<image bytes>' && e.message.startsWith('<image bytes>: cannot read image: '));
  }
  // Both outcomes happen: the mutations are neither all harmless nor all fatal.
  const sum = Object.values(totals).reduce((a, t) => ({ ok: a.ok + t.ok, refused: a.refused + t.refused }), { ok: 0, refused: 0 });
  assert.ok(sum.ok > 100 && sum.refused > 100, JSON.stringify(totals));
});

test('fuzz: safetensors files are read or refused with a WeightFileError naming the file', { timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'osdface-fuzz-st-');
  const seedFile = path.join(dir, 'seed.safetensors');
  const a = floatTensor([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const b = floatTensor([4], Float32Array.from([7, 8, 9, 10]));
  writeSafetensors(seedFile, new Map([['layer.weight', a], ['layer.bias', b]]), { format: 'pt' });
  const seedBytes = fs.readFileSync(seedFile);
  const headerEnd = 8 + Number(seedBytes.readBigUInt64LE(0));
  const file = path.join(dir, 'mutant.safetensors');
  const r = await fuzz('safetensors', seedBytes, 800, [[0, headerEnd]], (bytes) => {
    fs.writeFileSync(file, bytes);
    const f = SafetensorsFile.open(file);
    try {
      f.readAll();
    } finally {
      f.close();
    }
  }, (e) => e instanceof WeightFileError && e.file === file && e.message.startsWith(`${file}: `));
  assert.ok(r.ok > 20 && r.refused > 200, JSON.stringify(r));
});

test('fuzz: torch zip checkpoints are read or refused with a WeightFileError naming the file', { timeout: 300_000 }, async (t) => {
  const seedFile = path.join(parityA, 'osdface/embedding_change_weights.pth');
  if (!fs.existsSync(seedFile)) return t.skip(`no seed checkpoint at ${seedFile}`);
  const dir = tempDir(t, 'osdface-fuzz-zip-');
  const seedBytes = fs.readFileSync(seedFile);
  const file = path.join(dir, 'mutant.pth');
  // the local headers and pickle at the start, the central directory at the end
  const hot: [number, number][] = [[0, 1024], [seedBytes.length - 1024, seedBytes.length]];
  const r = await fuzz('torch-zip', seedBytes, 1500, hot, (bytes) => {
    fs.writeFileSync(file, bytes);
    loadTorchCheckpoint(file);
  }, (e) => e instanceof WeightFileError && e.file === file && e.message.includes(file));
  assert.ok(r.refused > 200, JSON.stringify(r));
});

/** A small legacy (pre-1.6) torch.save file, written opcode by opcode (protocol 2), with two float tensors on one storage and an int64 one. */
function legacySeed(): Buffer {
  const out: number[] = [];
  const op = (...b: number[]) => out.push(...b);
  const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  const str = (s: string) => { const b = Buffer.from(s); op(0x58, ...le32(b.length), ...b); };
  const int = (n: number) => (n < 256 ? op(0x4b, n) : op(0x4d, n & 0xff, n >> 8));
  const global = (m: string, n: string) => op(0x63, ...Buffer.from(`${m}\n${n}\n`));
  const ints = (xs: number[]) => { op(0x28); xs.forEach(int); op(0x74); };
  const pickles: Buffer[] = [];
  const end = () => { op(0x2e); pickles.push(Buffer.from(out.splice(0))); };
  let magic = 0x1950a86a20f9469cfc6cn;
  const mb: number[] = [];
  for (let i = 0; i < 10; i++) { mb.push(Number(magic & 0xffn)); magic >>= 8n; }
  op(0x80, 2, 0x8a, 10, ...mb); end();
  op(0x80, 2); int(1001); end();
  op(0x80, 2, 0x7d); str('protocol_version'); int(1001); op(0x73); str('little_endian'); op(0x88, 0x73); end();
  const storage = (cls: string, key: string, numel: number) => { op(0x28); str('storage'); global('torch', cls); str(key); str('cpu'); int(numel); op(0x4e, 0x74, 0x51); };
  const tensor = (cls: string, key: string, numel: number, offset: number, size: number[], stride: number[]) => {
    global('torch._utils', '_rebuild_tensor_v2'); op(0x28); storage(cls, key, numel); int(offset); ints(size); ints(stride); op(0x89);
    global('collections', 'OrderedDict'); op(0x28, 0x74, 0x52, 0x74, 0x52);
  };
  op(0x80, 2); global('collections', 'OrderedDict'); op(0x28, 0x74, 0x52);
  str('conv.weight'); tensor('FloatStorage', '0', 6, 0, [2, 3], [3, 1]); op(0x73);
  str('conv.bias'); tensor('FloatStorage', '0', 6, 4, [2], [1]); op(0x73);
  str('steps'); tensor('LongStorage', '1', 2, 0, [2], [1]); op(0x73);
  end();
  op(0x80, 2, 0x5d, 0x28); str('0'); str('1'); op(0x65); end();
  const s0 = Buffer.alloc(8 + 24);
  s0.writeBigInt64LE(6n, 0);
  Float32Array.from([1, 2, 3, 4, 5, 6]).forEach((v, i) => s0.writeFloatLE(v, 8 + 4 * i));
  const s1 = Buffer.alloc(8 + 16);
  s1.writeBigInt64LE(2n, 0);
  s1.writeBigInt64LE(7n, 8);
  s1.writeBigInt64LE(-3n, 16);
  return Buffer.concat([...pickles, s0, s1]);
}

test('fuzz: legacy torch files (no CRC) are read or refused with a WeightFileError naming the file', { timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'osdface-fuzz-legacy-');
  const seedBytes = legacySeed();
  const file = path.join(dir, 'mutant.pth');
  fs.writeFileSync(file, seedBytes);
  const m = loadTorchCheckpoint(file); // the seed itself is valid
  assert.deepEqual([...m.keys()], ['conv.weight', 'conv.bias', 'steps']);
  const allowed = (e: unknown) => e instanceof WeightFileError && e.file === file && e.message.includes(file);
  const r = await fuzz('torch-legacy', seedBytes, 3000, [[0, seedBytes.length - 40]], (bytes) => {
    fs.writeFileSync(file, bytes);
    loadTorchCheckpoint(file);
  }, allowed);
  assert.ok(r.ok > 20 && r.refused > 500, JSON.stringify(r));
  // a real legacy checkpoint, when the shared weights are there: its pickle is the first 64 kB
  const real = path.join(shared, 'weights/retinaface/mobilenet0.25_Final.pth');
  if (fs.existsSync(real)) {
    const bytes = fs.readFileSync(real);
    await fuzz('torch-legacy-real', bytes, 150, [[0, 65536]], (b) => {
      fs.writeFileSync(file, b);
      loadTorchCheckpoint(file);
    }, allowed);
  }
});
