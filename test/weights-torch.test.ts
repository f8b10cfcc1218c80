import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { unpickle } from '../src/weights/pickle.js';
import { loadTorchCheckpoint } from '../src/weights/torch.js';
import { crc32, readZip } from '../src/weights/zip.js';
import { loadEmbeddingChange, loadVreCheckpoint, requireKeys } from '../src/weights/osdface.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { noFixtures, parityA, tempDir, throwsWeightError } from './helpers.js';

const embeddingPth = path.join(parityA, 'osdface/embedding_change_weights.pth');
const associateCkpt = path.join(parityA, 'osdface/associate_2.ckpt');

// ---------------------------------------------------------------------------------------------
// A tiny pickle writer: just the opcodes torch.save emits, so tests can build exact byte streams.

class PickleBuilder {
  private readonly out: number[] = [];
  op(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  raw(b: Uint8Array): this {
    for (const x of b) this.out.push(x);
    return this;
  }
  proto(v = 2): this {
    return this.op(0x80, v);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x58, ...u32(b.length)).raw(b);
  }
  shortStr(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x8c, b.length).raw(b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    return this.op(0x4a, ...u32(n >>> 0));
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  stackGlobal(module: string, name: string): this {
    return this.shortStr(module).shortStr(name).op(0x93);
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  emptyTuple(): this {
    return this.op(0x29);
  }
  emptyDict(): this {
    return this.op(0x7d);
  }
  setitem(): this {
    return this.op(0x73);
  }
  setitems(): this {
    return this.op(0x75);
  }
  reduce(): this {
    return this.op(0x52);
  }
  build(): this {
    return this.op(0x62);
  }
  stop(): this {
    return this.op(0x2e);
  }
  ints(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  orderedDict(stackGlobal = false): this {
    (stackGlobal ? this.stackGlobal('collections', 'OrderedDict') : this.global('collections', 'OrderedDict'));
    return this.emptyTuple().reduce();
  }
  /** `_rebuild_tensor_v2(('storage', cls, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`. */
  tensor(t: { cls: string; key: string; numel: number; offset: number; size: number[]; stride: number[]; param?: boolean; stackGlobal?: boolean }): this {
    const g = (m: string, n: string) => (t.stackGlobal ? this.stackGlobal(m, n) : this.global(m, n));
    if (t.param) g('torch._utils', '_rebuild_parameter').mark();
    g('torch._utils', '_rebuild_tensor_v2');
    this.mark();
    this.mark().str('storage');
    g('torch', t.cls);
    this.str(t.key).str('cpu').int(t.numel).tuple().op(0x51);
    this.int(t.offset).ints(t.size).ints(t.stride).op(0x89).orderedDict(t.stackGlobal);
    this.tuple().reduce();
    if (t.param) this.op(0x88).orderedDict(t.stackGlobal).tuple().reduce();
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

// ---------------------------------------------------------------------------------------------
// A tiny zip writer (stored or deflate entries, optional ZIP64 records).

function writeZip(file: string, entries: { name: string; data: Uint8Array; deflate?: boolean }[], zip64 = false): void {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const body = e.deflate ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    parts.push(local, name, body);

    const extra = Buffer.alloc(zip64 ? 12 : 0);
    if (zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(8, 2);
      extra.writeBigUInt64LE(BigInt(offset), 4);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(45, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt16LE(e.deflate ? 8 : 0, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(body.length, 20);
    c.writeUInt32LE(e.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    central.push(c, name, extra);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  fs.writeFileSync(file, Buffer.concat([...parts, cd, ...tail, eocd]));
}

function f32Bytes(xs: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(xs).buffer);
}

/** Writes a torch.save-like archive holding `pkl` and the given storages. */
function writeCheckpoint(file: string, pkl: Uint8Array, storages: Record<string, Uint8Array>, zip64 = false): void {
  writeZip(
    file,
    [
      { name: 'archive/data.pkl', data: pkl, deflate: true },
      ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
      { name: 'archive/version', data: Buffer.from('3\n') },
    ],
    zip64,
  );
}

// ---------------------------------------------------------------------------------------------

test('embedding_change_weights.pth: 4 tensors that reproduce the reference prompt', { skip: noFixtures }, (t) => {
  const w = loadEmbeddingChange(embeddingPth);
  assert.deepEqual([...w.keys()], ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias']);
  assert.deepEqual(w.get('conv1.weight')!.shape, [16, 32, 1]);
  assert.deepEqual(w.get('conv1.bias')!.shape, [16]);
  assert.deepEqual(w.get('conv2.weight')!.shape, [48, 16, 1]);
  assert.deepEqual(w.get('conv2.bias')!.shape, [48]);
  for (const v of w.values()) assert.equal(v.dtype, 'float32');

  // prompt[b,t,:] = silu(W2 silu(W1 tok[b,t,:] + b1) + b2): checks every loaded value is in place.
  const io = SafetensorsFile.open(path.join(parityA, 'io.safetensors'));
  t.after(() => io.close());
  const tok = io.read('vre.tokens').data as Float32Array;
  const want = io.read('vre.prompt').data as Float32Array;
  const [W1, b1, W2, b2] = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias'].map((k) => w.get(k)!.data as Float32Array);
  const silu = (x: number) => x / (1 + Math.exp(-x));
  let maxDiff = 0;
  for (let row = 0; row < 2 * 77; row++) {
    const h = new Float64Array(16);
    for (let j = 0; j < 16; j++) {
      let s = b1[j];
      for (let e = 0; e < 32; e++) s += W1[j * 32 + e] * tok[row * 32 + e];
      h[j] = silu(s);
    }
    for (let c = 0; c < 48; c++) {
      let s = b2[c];
      for (let j = 0; j < 16; j++) s += W2[c * 16 + j] * h[j];
      maxDiff = Math.max(maxDiff, Math.abs(silu(s) - want[row * 48 + c]));
    }
  }
  assert.ok(maxDiff < 1e-5, `max diff ${maxDiff}`);
});

test('associate_2.ckpt: VRE keys only, codebook matches the reference tokens', { skip: noFixtures }, (t) => {
  const vre = loadVreCheckpoint(associateCkpt);
  const keys = [...vre.keys()];
  assert.deepEqual(vre.get('quantize.embedding.weight')!.shape, [512, 32]);
  assert.ok(vre.has('encoder.conv_in.weight'));
  assert.ok(vre.has('quant_conv.weight'));
  assert.ok(keys.every((k) => /^(encoder|quant_conv|quantize)\./.test(k)), 'only encoder, quant_conv and quantize keys');
  assert.ok(!keys.some((k) => k.startsWith('decoder.') || k.includes('vqvae_')));

  // Every non-zero token row of the reference output is the codebook row named by vre.indices.
  const io = SafetensorsFile.open(path.join(parityA, 'io.safetensors'));
  t.after(() => io.close());
  const tokens = io.read('vre.tokens').data as Float32Array;
  const indices = io.read('vre.indices').data as BigInt64Array;
  const codebook = vre.get('quantize.embedding.weight')!.data as Float32Array;
  let checked = 0;
  for (let row = 0; row < indices.length; row++) {
    const i = Number(indices[row]);
    if (i < 0) continue;
    assert.deepEqual(tokens.subarray(row * 32, row * 32 + 32), codebook.subarray(i * 32, i * 32 + 32));
    checked++;
  }
  assert.ok(checked > 0);

  // The unfiltered checkpoint still has the other networks (so the filter is what removed them).
  const all = loadTorchCheckpoint(associateCkpt);
  assert.ok([...all.keys()].some((k) => k.startsWith('vqvae_HQ.')));
  assert.ok([...all.keys()].some((k) => k.startsWith('vqvae_LQ.decoder.')));
  assert.deepEqual(all.get('vqvae_LQ.encoder.conv_in.weight')!.data, vre.get('encoder.conv_in.weight')!.data);

  throwsWeightError(() => loadVreCheckpoint(embeddingPth), embeddingPth, "no 'vqvae_LQ.'", "'conv1.'");
});

test('readZip lists torch archive entries', { skip: noFixtures }, () => {
  const entries = readZip(embeddingPth);
  const names = entries.map((e) => e.name).sort();
  assert.deepEqual(names, [
    'embedding_change_weights/data.pkl',
    'embedding_change_weights/data/0',
    'embedding_change_weights/data/1',
    'embedding_change_weights/data/2',
    'embedding_change_weights/data/3',
    'embedding_change_weights/version',
  ]);
  const d0 = entries.find((e) => e.name.endsWith('data/0'))!.read();
  assert.equal(d0.length, 16 * 32 * 4);
  assert.equal(entries.find((e) => e.name.endsWith('version'))!.read().toString().trim(), '3');
});

test('hand-built checkpoint: strides, offsets, dtypes, wrappers, ZIP64, protocol 4', (t) => {
  const dir = tempDir(t, 'osdface-torch-');
  for (const variant of [
    { proto: 2, stackGlobal: false, zip64: false },
    { proto: 4, stackGlobal: true, zip64: true },
  ]) {
    const p = new PickleBuilder().proto(variant.proto);
    if (variant.proto >= 4) p.op(0x95, 0, 0, 0, 0, 0, 0, 0, 0); // FRAME (length is only a hint)
    // {'state_dict': OrderedDict(...), 'epoch': 3}
    p.emptyDict().op(0x94).str('state_dict').orderedDict(variant.stackGlobal).op(0x94).mark();
    // storage '0': 24 floats 0..23; 'w_t' is its transpose view (size (3,4), stride (1,3))
    p.str('w_t').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 0, size: [3, 4], stride: [1, 3], stackGlobal: variant.stackGlobal });
    // strided view with an offset: rows 5 and 13, columns 0 and 2 -> [[5,7],[13,15]]
    p.str('w_off').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 5, size: [2, 2], stride: [8, 2], stackGlobal: variant.stackGlobal });
    // contiguous slice, wrapped as an nn.Parameter
    p.str('bias').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 20, size: [4], stride: [1], param: true, stackGlobal: variant.stackGlobal });
    // broadcast-like zero stride
    p.str('rep').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 1, size: [2, 3], stride: [0, 1], stackGlobal: variant.stackGlobal });
    p.str('half').tensor({ cls: 'HalfStorage', key: '1', numel: 3, offset: 0, size: [3], stride: [1], stackGlobal: variant.stackGlobal });
    p.str('ids').tensor({ cls: 'LongStorage', key: '2', numel: 2, offset: 0, size: [2], stride: [1], stackGlobal: variant.stackGlobal });
    p.str('scalar').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 7, size: [], stride: [], stackGlobal: variant.stackGlobal });
    p.str('nested').emptyDict().str('inner').tensor({ cls: 'FloatStorage', key: '0', numel: 24, offset: 0, size: [2], stride: [1] }).setitem();
    p.str('note').str('not a tensor').str('list').op(0x5d).setitems();
    // torch's _metadata BUILD on the OrderedDict
    p.emptyDict().str('_metadata').orderedDict(variant.stackGlobal).mark().str('').emptyDict().str('version').int(1).setitem().setitems().setitem().build();
    p.setitem().str('epoch').int(3).setitem().stop();

    const half = new Uint8Array(6);
    new DataView(half.buffer).setUint16(0, 0x3c00, true);
    new DataView(half.buffer).setUint16(2, 0xc000, true);
    new DataView(half.buffer).setUint16(4, 0x7c00, true);
    const file = path.join(dir, `ckpt-${variant.proto}.pth`);
    writeCheckpoint(
      file,
      p.bytes(),
      {
        '0': f32Bytes(Array.from({ length: 24 }, (_, i) => i)),
        '1': half,
        '2': new Uint8Array(new BigInt64Array([-5n, 2n ** 40n]).buffer),
      },
      variant.zip64,
    );

    const m = loadTorchCheckpoint(file);
    assert.deepEqual([...m.keys()], ['w_t', 'w_off', 'bias', 'rep', 'half', 'ids', 'scalar', 'nested.inner']);
    const get = (k: string) => m.get(k)!;
    assert.deepEqual(get('w_t').shape, [3, 4]);
    assert.deepEqual([...get('w_t').data as Float32Array], [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]);
    assert.deepEqual([...get('w_off').data as Float32Array], [5, 7, 13, 15]);
    assert.deepEqual([...get('bias').data as Float32Array], [20, 21, 22, 23]);
    assert.deepEqual([...get('rep').data as Float32Array], [1, 2, 3, 1, 2, 3]);
    assert.equal(get('half').dtype, 'float32');
    assert.deepEqual([...get('half').data as Float32Array], [1, -2, Infinity]);
    assert.equal(get('ids').dtype, 'int64');
    assert.deepEqual([...get('ids').data as BigInt64Array], [-5n, 2n ** 40n]);
    assert.deepEqual(get('scalar').shape, []);
    assert.deepEqual([...get('scalar').data as Float32Array], [7]);
    // views are copies: writing one must not change another sharing its storage
    (get('bias').data as Float32Array)[0] = -1;
    assert.equal((loadTorchCheckpoint(file).get('bias')!.data as Float32Array)[0], 20);
  }
});

test('globals outside the allow-list are refused (GLOBAL and STACK_GLOBAL)', (t) => {
  const file = 'evil.pth';
  const viaGlobal = new PickleBuilder().proto(2).global('os', 'system').str('echo pwned').op(0x85).reduce().stop().bytes();
  throwsWeightError(() => unpickle(viaGlobal, { file }), file, "'os.system'", 'refused');
  const viaStack = new PickleBuilder().proto(4).stackGlobal('os', 'system').str('echo pwned').op(0x85).reduce().stop().bytes();
  throwsWeightError(() => unpickle(viaStack, { file, entry: 'archive/data.pkl' }), file, "'os.system'", 'refused', 'archive/data.pkl');
  const builtins = new PickleBuilder().proto(2).global('builtins', 'eval').stop().bytes();
  throwsWeightError(() => unpickle(builtins, { file }), file, "'builtins.eval'", 'refused');
  // An allowed name used the wrong way is refused too.
  const callStorage = new PickleBuilder().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes();
  throwsWeightError(() => unpickle(callStorage, { file }), file, 'torch.FloatStorage', 'refused');
  const buildOnList = new PickleBuilder().proto(2).op(0x5d).emptyDict().build().stop().bytes();
  throwsWeightError(() => unpickle(buildOnList, { file }), file, 'BUILD', 'refused');

  // ...and through a checkpoint file, the error names that file.
  const dir = tempDir(t, 'osdface-torch-');
  const ckpt = path.join(dir, 'evil.pth');
  writeCheckpoint(ckpt, viaStack, {});
  throwsWeightError(() => loadTorchCheckpoint(ckpt), ckpt, "'os.system'", 'refused', 'nothing was executed');
});

test('unknown and unsupported opcodes are refused; truncated pickles fail cleanly', () => {
  const file = 'x.pkl';
  throwsWeightError(() => unpickle(Uint8Array.from([0x80, 0x02, 0xff, 0x2e]), { file }), file, 'unknown opcode 0xff', 'refused');
  throwsWeightError(() => unpickle(Buffer.from('\x80\x02(ios\nsystem\n.', 'latin1'), { file }), file, 'INST', 'refused');
  throwsWeightError(() => unpickle(Uint8Array.from([0x80, 0x02, 0x58, 10, 0, 0, 0, 0x61]), { file }), file, 'truncated');
  throwsWeightError(() => unpickle(Uint8Array.from([0x80, 0x02, 0x4b]), { file }), file, 'truncated');
  throwsWeightError(() => unpickle(Uint8Array.from([0x80, 0x02, 0x4e]), { file }), file, 'truncated');
  throwsWeightError(() => unpickle(Uint8Array.from([0x80, 0x02, 0x68, 0x05, 0x2e]), { file }), file, 'memo entry 5');
  // A storage persistent id without a loader is refused rather than guessed.
  const pid = new PickleBuilder().proto(2).mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(1).tuple().op(0x51).stop();
  throwsWeightError(() => unpickle(pid.bytes(), { file }), file, 'persistent id', 'refused');
});

test('plain values decode (ints, LONG1, floats, strings, bytes, containers)', () => {
  const p = new PickleBuilder().proto(2).mark();
  p.int(7).op(0x4a, ...u32(-123456 >>> 0)).op(0x8a, 1, 0xff).op(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1);
  const f = Buffer.alloc(8);
  f.writeDoubleBE(-1.5);
  p.op(0x47).raw(f).op(0x4e, 0x88, 0x89).str('héllo').op(0x43, 2, 1, 2);
  p.global('_codecs', 'encode').str('\u00ff\u0001').str('latin1').op(0x86).reduce();
  p.op(0x5d).int(1).op(0x61).mark().int(2).int(3).op(0x65); // [1, 2, 3]
  p.tuple().stop();
  const v = unpickle(p.bytes(), { file: 'v.pkl' }) as unknown[];
  assert.deepEqual(v, [7, -123456, -1, 2n ** 64n, -1.5, null, true, false, 'héllo', Uint8Array.from([1, 2]), Uint8Array.from([255, 1]), [1, 2, 3]]);
});

test('corrupt and non-zip files are rejected, naming the file', { skip: noFixtures }, (t) => {
  const dir = tempDir(t, 'osdface-torch-');
  const good = fs.readFileSync(embeddingPth);

  const truncated = path.join(dir, 'truncated.pth');
  fs.writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
  throwsWeightError(() => loadTorchCheckpoint(truncated), truncated, 'end of central directory');
  throwsWeightError(() => readZip(truncated), truncated, 'truncated');

  // Flip a byte inside a stored storage entry: the CRC check catches it.
  const entries = readZip(embeddingPth);
  const e0 = entries.find((e) => e.name.endsWith('data/0'))!;
  const corrupt = Buffer.from(good);
  const lh = e0.localHeaderOffset;
  corrupt[lh + 30 + corrupt.readUInt16LE(lh + 26) + corrupt.readUInt16LE(lh + 28) + 10] ^= 0xff;
  const crcFile = path.join(dir, 'crc.pth');
  fs.writeFileSync(crcFile, corrupt);
  throwsWeightError(() => loadTorchCheckpoint(crcFile), crcFile, 'CRC-32', 'embedding_change_weights/data/0');

  const legacy = path.join(dir, 'legacy.pth');
  fs.writeFileSync(legacy, Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc]));
  // A legacy (non-zip) file whose first pickle, the magic number, is cut short.
  throwsWeightError(() => loadTorchCheckpoint(legacy), legacy, 'magic number', 'truncated');

  const random = path.join(dir, 'random.pth');
  fs.writeFileSync(random, 'hello world');
  throwsWeightError(() => loadTorchCheckpoint(random), random, 'not a torch checkpoint');

  const missing = path.join(dir, 'missing.pth');
  throwsWeightError(() => loadTorchCheckpoint(missing), missing, 'does not exist');

  // A storage the pickle needs but the archive lacks, and a view reaching past its storage.
  const p = () => new PickleBuilder().proto(2).emptyDict().str('w');
  const noStorage = path.join(dir, 'nostorage.pth');
  writeCheckpoint(noStorage, p().tensor({ cls: 'FloatStorage', key: '0', numel: 4, offset: 0, size: [4], stride: [1] }).setitem().stop().bytes(), {});
  throwsWeightError(() => loadTorchCheckpoint(noStorage), noStorage, "storage '0'", 'missing');
  const overrun = path.join(dir, 'overrun.pth');
  writeCheckpoint(overrun, p().tensor({ cls: 'FloatStorage', key: '0', numel: 4, offset: 2, size: [2, 2], stride: [2, 1] }).setitem().stop().bytes(), {
    '0': f32Bytes([1, 2, 3, 4]),
  });
  throwsWeightError(() => loadTorchCheckpoint(overrun), overrun, "tensor 'w'", 'past its storage');
  const notDict = path.join(dir, 'list.pth');
  writeCheckpoint(notDict, new PickleBuilder().proto(2).op(0x5d).stop().bytes(), {});
  throwsWeightError(() => loadTorchCheckpoint(notDict), notDict, 'state dict');
});

test('requireKeys lists missing keys with a count', () => {
  const have = new Map([['a', 1], ['b', 2]]);
  requireKeys(have, ['a', 'b'], 'f.ckpt');
  const expected = ['a', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7'];
  const err = throwsWeightError(() => requireKeys(have, expected, 'f.ckpt'), 'f.ckpt', 'missing 7 of 8', "'x1'", 'and 2 more');
  assert.equal(err.key, 'x1');
});
