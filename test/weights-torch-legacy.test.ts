/**
 * The legacy (pre-1.6, non-zip) torch.save format and numpy arrays in pickles, on files this test
 * writes byte by byte. The layout follows torch/serialization.py (`_legacy_save`): five pickles
 * (magic number 0x1950a86a20f9469cfc6c, protocol version 1001, sys_info, the object with storages
 * as persistent ids ('storage', type, key, location, numel, view_metadata), the sorted storage
 * keys), then per storage an int64 little-endian element count and the raw elements. Numpy arrays
 * are pickled as numpy's array_reduce writes them: `_reconstruct(ndarray, (0,), b'b')` then BUILD
 * `(1, shape, dtype, is_fortran, raw)`, the dtype as `dtype('f8', False, True)` then BUILD
 * `(3, '<', None, None, None, -1, -1, 0)`; protocol 2 spells bytes as `_codecs.encode(str, 'latin1')`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadTorchCheckpoint } from '../src/weights/torch.js';
import { tempDir, throwsWeightError } from './helpers.js';

/** Just the pickle opcodes (protocol 2) these files need. */
class Pk {
  private readonly out: number[] = [];
  op(...b: number[]): this {
    this.out.push(...b);
    return this;
  }
  raw(b: Uint8Array): this {
    for (const x of b) this.out.push(x);
    return this;
  }
  proto(): this {
    return this.op(0x80, 2);
  }
  stop(): this {
    return this.op(0x2e);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x58, ...le32(b.length)).raw(b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    return this.op(0x4a, ...le32(n >>> 0));
  }
  none(): this {
    return this.op(0x4e);
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`));
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  ints(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  reduce(): this {
    return this.op(0x52);
  }
  build(): this {
    return this.op(0x62);
  }
  emptyDict(): this {
    return this.op(0x7d);
  }
  setitem(): this {
    return this.op(0x73);
  }
  /** bytes as protocol 2 writes them: _codecs.encode(<latin-1 str>, 'latin1'). */
  bytesP2(b: Uint8Array): this {
    return this.global('_codecs', 'encode').mark().str(String.fromCharCode(...b)).str('latin1').tuple().reduce();
  }
  /** The legacy persistent id ('storage', torch.<cls>, key, 'cpu', numel, view). */
  storage(cls: string, key: string, numel: number, view?: [string, number, number]): this {
    this.mark().str('storage').global('torch', cls).str(key).str('cpu').int(numel);
    if (view) this.mark().str(view[0]).int(view[1]).int(view[2]).tuple();
    else this.none();
    return this.tuple().op(0x51);
  }
  /** _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()). */
  tensorV2(storage: (p: this) => this, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    storage(this);
    return this.int(offset).ints(size).ints(stride).bool(false).global('collections', 'OrderedDict').mark().tuple().reduce().tuple().reduce();
  }
  /** torch < 0.4: _rebuild_tensor(storage, offset, size, stride). */
  tensorV1(storage: (p: this) => this, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor').mark();
    storage(this);
    return this.int(offset).ints(size).ints(stride).tuple().reduce();
  }
  numpyArray(shape: number[], data: Float64Array, opts: { fortran?: boolean; objectData?: boolean; fields?: boolean } = {}): this {
    this.global('numpy.core.multiarray', '_reconstruct').mark().global('numpy', 'ndarray').ints([0]).bytesP2(Uint8Array.of(0x62)).tuple().reduce();
    this.mark().int(1).ints(shape);
    this.global('numpy', 'dtype').mark().str('f8').bool(false).bool(true).tuple().reduce();
    this.mark().int(3).str('<').none();
    if (opts.fields) this.mark().str('x').tuple();
    else this.none();
    this.none().int(-1 >>> 0).int(-1 >>> 0).int(0).tuple().build();
    this.bool(opts.fortran ?? false);
    if (opts.objectData) this.op(0x5d);
    else this.bytesP2(new Uint8Array(data.buffer));
    return this.tuple().build();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function le32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** The three header pickles of _legacy_save. */
function header(magicOverride?: bigint): Uint8Array[] {
  let m = magicOverride ?? 0x1950a86a20f9469cfc6cn;
  const magicBytes: number[] = [];
  for (let i = 0; i < 10; i++) {
    magicBytes.push(Number(m & 0xffn));
    m >>= 8n;
  }
  const magic = new Pk().proto().op(0x8a, 10, ...magicBytes).stop().bytes();
  const protocol = new Pk().proto().int(1001).stop().bytes();
  const sysInfo = new Pk().proto().emptyDict()
    .str('protocol_version').int(1001).setitem()
    .str('little_endian').bool(true).setitem()
    .str('type_sizes').emptyDict().str('short').int(2).setitem().str('int').int(4).setitem().str('long').int(4).setitem().setitem()
    .stop().bytes();
  return [magic, protocol, sysInfo];
}

/** A storage record: int64 little-endian element count, then the elements. */
function storageRecord(count: number, elements: Uint8Array): Uint8Array {
  const b = Buffer.alloc(8 + elements.length);
  b.writeBigInt64LE(BigInt(count), 0);
  Buffer.from(elements).copy(b, 8);
  return b;
}

function keyList(keys: string[]): Uint8Array {
  const p = new Pk().proto().op(0x5d).mark();
  for (const k of keys) p.str(k);
  return p.op(0x65).stop().bytes();
}

function writeLegacy(file: string, parts: Uint8Array[]): void {
  fs.writeFileSync(file, Buffer.concat(parts.map((p) => Buffer.from(p))));
}

const f32 = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

/** A state dict with plain, strided, offset, viewed, int64 (v1 rebuild) and float64 tensors. */
function sampleObject(): Uint8Array {
  const s0 = (p: Pk) => p.storage('FloatStorage', '0', 6);
  const s1view = (p: Pk) => p.storage('FloatStorage', '1', 8, ['1v', 2, 4]);
  const s2 = (p: Pk) => p.storage('LongStorage', '2', 3);
  const s3 = (p: Pk) => p.storage('DoubleStorage', '3', 2);
  return new Pk().proto().global('collections', 'OrderedDict').mark().tuple().reduce()
    .str('a').tensorV2(s0, 0, [2, 3], [3, 1]).setitem()
    .str('a_t').tensorV2(s0, 0, [3, 2], [1, 3]).setitem() // the transpose of a, same storage
    .str('tail').tensorV2(s0, 4, [2], [1]).setitem() // offset into the storage
    .str('view').tensorV2(s1view, 1, [2], [2]).setitem() // inside the view of storage 1 that starts at element 2
    .str('long').tensorV1(s2, 0, [3], [1]).setitem()
    .str('double').tensorV2(s3, 0, [2], [1]).setitem()
    .stop().bytes();
}

function sampleStorages(): Uint8Array[] {
  const i64 = Buffer.alloc(24);
  [7, -2, 2 ** 40].forEach((v, i) => i64.writeBigInt64LE(BigInt(v), 8 * i));
  return [
    storageRecord(6, f32([1, 2, 3, 4, 5, 6])),
    storageRecord(8, f32([10, 11, 12, 13, 14, 15, 16, 17])),
    storageRecord(3, i64),
    storageRecord(2, new Uint8Array(Float64Array.of(0.25, -1.5).buffer)),
  ];
}

test('legacy torch file: tensors, shared storages, strides, offsets, storage views, _rebuild_tensor, dtypes', (t) => {
  const dir = tempDir(t, 'osdface-legacy-');
  const file = path.join(dir, 'legacy.pth');
  writeLegacy(file, [...header(), sampleObject(), keyList(['0', '1', '2', '3']), ...sampleStorages()]);
  const m = loadTorchCheckpoint(file);
  assert.deepEqual([...m.keys()], ['a', 'a_t', 'tail', 'view', 'long', 'double']);
  assert.deepEqual(m.get('a')!.shape, [2, 3]);
  assert.deepEqual([...m.get('a')!.data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...m.get('a_t')!.data], [1, 4, 2, 5, 3, 6]);
  assert.deepEqual([...m.get('tail')!.data], [5, 6]);
  // view = storage 1 elements 2..5 = [12, 13, 14, 15]; offset 1, stride 2 -> [13, 15]
  assert.deepEqual([...m.get('view')!.data], [13, 15]);
  assert.equal(m.get('long')!.dtype, 'int64');
  assert.deepEqual([...(m.get('long')!.data as BigInt64Array)], [7n, -2n, 2n ** 40n]);
  assert.equal(m.get('double')!.dtype, 'float32');
  assert.deepEqual([...m.get('double')!.data], [0.25, -1.5]);
  // The filter drops tensors without reading them.
  assert.deepEqual([...loadTorchCheckpoint(file, { filter: (k) => k === 'tail' }).keys()], ['tail']);
});

test('torch < 0.2 tensors: torch.FloatTensor() + BUILD (storage, offset, size, stride), referenced through the memo before BUILD', (t) => {
  const dir = tempDir(t, 'osdface-legacy-');
  const file = path.join(dir, 'old.pth');
  const obj = new Pk().proto().global('collections', 'OrderedDict').mark().tuple().reduce()
    .str('w').global('torch', 'FloatTensor').mark().tuple().reduce().op(0x71, 7) // BINPUT 7 before the state is set
    .mark().storage('FloatStorage', '0', 4).int(1).ints([3]).ints([1]).tuple().build().setitem()
    .str('tied').op(0x68, 7).setitem() // BINGET 7: the same tensor again
    .stop().bytes();
  writeLegacy(file, [...header(), obj, keyList(['0']), storageRecord(4, f32([9, 8, 7, 6]))]);
  const m = loadTorchCheckpoint(file);
  assert.deepEqual([...m.get('w')!.data], [8, 7, 6]);
  assert.deepEqual([...m.get('tied')!.data], [8, 7, 6]);
  const badState = path.join(dir, 'bad.pth');
  writeLegacy(badState, [...header(), new Pk().proto().emptyDict().str('w').global('torch', 'FloatTensor').mark().tuple().reduce().ints([1, 2]).build().setitem().stop().bytes(), keyList([])]);
  throwsWeightError(() => loadTorchCheckpoint(badState), badState, 'torch.FloatTensor', 'refused');
});

test('numpy arrays in a legacy file (FID statistics layout): float64, C and Fortran order', (t) => {
  const dir = tempDir(t, 'osdface-legacy-');
  const file = path.join(dir, 'stats.pth');
  const obj = new Pk().proto().emptyDict()
    .str('name').str('FFHQ').setitem()
    .str('size').int(512).setitem()
    .str('mean').numpyArray([3], Float64Array.of(0.1, -2, 1e-300)).setitem()
    // [[1, 2], [3, 4]] stored column-major
    .str('cov').numpyArray([2, 2], Float64Array.of(1, 3, 2, 4), { fortran: true }).setitem()
    .stop().bytes();
  writeLegacy(file, [...header(), obj, keyList([])]);
  const m = loadTorchCheckpoint(file);
  assert.deepEqual([...m.keys()], ['mean', 'cov']);
  assert.equal(m.get('mean')!.dtype, 'float64');
  assert.deepEqual([...m.get('mean')!.data], [0.1, -2, 1e-300]);
  assert.deepEqual(m.get('cov')!.shape, [2, 2]);
  assert.deepEqual([...m.get('cov')!.data], [1, 2, 3, 4]);
});

test('numpy arrays outside the plain numeric subset are refused, nothing executed', (t) => {
  const dir = tempDir(t, 'osdface-legacy-');
  const obj = (arr: (p: Pk) => Pk) => arr(new Pk().proto().emptyDict().str('x')).setitem().stop().bytes();
  const objectArray = path.join(dir, 'object.pth');
  writeLegacy(objectArray, [...header(), obj((p) => p.numpyArray([1], Float64Array.of(1), { objectData: true })), keyList([])]);
  throwsWeightError(() => loadTorchCheckpoint(objectArray), objectArray, 'object arrays', 'nothing was executed');
  const structured = path.join(dir, 'structured.pth');
  writeLegacy(structured, [...header(), obj((p) => p.numpyArray([1], Float64Array.of(1), { fields: true })), keyList([])]);
  throwsWeightError(() => loadTorchCheckpoint(structured), structured, 'structured numpy dtypes');
  const evil = path.join(dir, 'evil.pth');
  writeLegacy(evil, [...header(), obj((p) => p.global('os', 'system').mark().str('touch /tmp/pwned').tuple().reduce()), keyList([])]);
  throwsWeightError(() => loadTorchCheckpoint(evil), evil, "global 'os.system'", 'refused');
});

test('corrupt and truncated legacy files fail with errors naming the file and the problem', (t) => {
  const dir = tempDir(t, 'osdface-legacy-');
  const full = Buffer.concat([...header(), sampleObject(), keyList(['0', '1', '2', '3']), ...sampleStorages()].map((p) => Buffer.from(p)));
  const write = (name: string, data: Uint8Array | Uint8Array[]) => {
    const f = path.join(dir, name);
    writeLegacy(f, Array.isArray(data) ? data : [data]);
    return f;
  };

  const cut = write('cut.pth', full.subarray(0, full.length - 3));
  throwsWeightError(() => loadTorchCheckpoint(cut), cut, "storage '3'", 'truncated');
  const noCount = write('nocount.pth', full.subarray(0, full.length - 16 - 8 + 4));
  throwsWeightError(() => loadTorchCheckpoint(noCount), noCount, "element count for storage '3'", 'truncated');
  const inPickle = write('inpickle.pth', full.subarray(0, 200));
  throwsWeightError(() => loadTorchCheckpoint(inPickle), inPickle, 'truncated');

  const badMagic = write('magic.pth', [...header(0x1234n), sampleObject()]);
  throwsWeightError(() => loadTorchCheckpoint(badMagic), badMagic, 'magic number');

  const storages = sampleStorages();
  const wrongCount = write('count.pth', [...header(), sampleObject(), keyList(['0', '1', '2', '3']), storageRecord(5, f32([1, 2, 3, 4, 5, 6])), ...storages.slice(1)]);
  throwsWeightError(() => loadTorchCheckpoint(wrongCount), wrongCount, "storage '0' holds 5 elements", 'says 6');

  const missingKey = write('missing.pth', [...header(), sampleObject(), keyList(['0', '1', '2']), ...storages.slice(0, 3)]);
  throwsWeightError(() => loadTorchCheckpoint(missingKey), missingKey, "storage '3'", 'missing from the storage key list');

  const unknownKey = write('unknown.pth', [...header(), sampleObject(), keyList(['0', '1', '2', '3', '9']), ...storages, storageRecord(1, f32([0]))]);
  throwsWeightError(() => loadTorchCheckpoint(unknownKey), unknownKey, "storage '9'", 'no tensor refers to');

  const viewPast = write('viewpast.pth', [
    ...header(),
    new Pk().proto().emptyDict().str('v').tensorV2((p) => p.storage('FloatStorage', '0', 4, ['0v', 2, 4]), 0, [1], [1]).setitem().stop().bytes(),
    keyList(['0']),
    storageRecord(4, f32([1, 2, 3, 4])),
  ]);
  throwsWeightError(() => loadTorchCheckpoint(viewPast), viewPast, "view '0v'", 'reaches past');

  const tensorPast = write('tensorpast.pth', [
    ...header(),
    new Pk().proto().emptyDict().str('w').tensorV2((p) => p.storage('FloatStorage', '0', 4), 2, [3], [1]).setitem().stop().bytes(),
    keyList(['0']),
    storageRecord(4, f32([1, 2, 3, 4])),
  ]);
  throwsWeightError(() => loadTorchCheckpoint(tensorPast), tensorPast, "tensor 'w'", 'past its storage');

  const tar = Buffer.alloc(600);
  tar.write('ustar', 257, 'latin1');
  const tarFile = write('tar.pth', tar);
  throwsWeightError(() => loadTorchCheckpoint(tarFile), tarFile, 'tar-format');
});
