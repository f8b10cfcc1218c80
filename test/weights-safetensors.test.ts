import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, decodeElements, writeSafetensors } from '../src/weights/safetensors.js';
import { similarKeys } from '../src/weights/errors.js';
import type { Tensor } from '../src/tensor.js';
import { noFixtures, parityA, tempDir, throwsWeightErrorNamingFile } from './helpers.js';

/** Builds a safetensors file by hand: header JSON (or raw text), data bytes, optional bogus length. */
function craft(file: string, header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

test('round trip of f32, f64, i64, i32, u8, bool and metadata', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const file = path.join(dir, 'rt.safetensors');
  const tensors: Record<string, Tensor> = {
    'a.weight': { dtype: 'float32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, -0, 7]) },
    ids: { dtype: 'int64', shape: [3], data: new BigInt64Array([-1n, 2n ** 40n, 9007199254740993n]) },
    scalar: { dtype: 'int64', shape: [], data: new BigInt64Array([399n]) },
    i32: { dtype: 'int32', shape: [2], data: new Int32Array([-7, 2147483647]) },
    u8: { dtype: 'uint8', shape: [2, 2], data: new Uint8Array([0, 1, 254, 255]) },
    mask: { dtype: 'bool', shape: [2], data: new Uint8Array([1, 0]) },
    empty: { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
    f64: { dtype: 'float64', shape: [1], data: new Float64Array([0.1]) },
  };
  writeSafetensors(file, tensors, { format: 'pt', note: 'hello' });
  assert.deepEqual(fs.readdirSync(dir), ['rt.safetensors'], 'no temporary file may remain');

  const st = SafetensorsFile.open(file);
  t.after(() => st.close());
  assert.deepEqual(st.keys(), Object.keys(tensors));
  assert.deepEqual(st.metadata, { format: 'pt', note: 'hello' });
  assert.deepEqual(st.info('ids'), { dtype: 'I64', shape: [3] });
  assert.equal(st.dataStart % 8, 0, 'data section is 8-byte aligned');
  for (const [k, want] of Object.entries(tensors)) {
    const got = st.read(k);
    if (k === 'f64') {
      // float reads are float32 by design
      assert.equal(got.dtype, 'float32');
      assert.deepEqual(got.data, new Float32Array([0.1]));
      continue;
    }
    assert.equal(got.dtype, want.dtype, k);
    assert.deepEqual(got.shape, want.shape, k);
    assert.deepEqual(got.data, want.data, k);
  }
  // Map input works too, and overwriting replaces the file atomically.
  writeSafetensors(file, new Map([['x', tensors['a.weight']]]));
  const st2 = SafetensorsFile.open(file);
  assert.deepEqual(st2.keys(), ['x']);
  assert.deepEqual(st2.metadata, {});
  st2.close();
});

test('writeSafetensors rejects inconsistent tensors and leaves nothing behind', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const file = path.join(dir, 'bad.safetensors');
  throwsWeightErrorNamingFile(
    () => writeSafetensors(file, { w: { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) } }),
    file,
    "'w'",
    '4 elements',
  );
  throwsWeightErrorNamingFile(
    () => writeSafetensors(file, { w: { dtype: 'int64', shape: [1], data: new Float32Array(1) } }),
    file,
    "'w'",
    'BigInt64Array',
  );
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('F16 and BF16 decode to float32 with exact bit patterns', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const half = [0x3c00, 0xc000, 0x3800, 0x7c00, 0xfc00, 0x0001, 0x7bff, 0x8000, 0x7e00, 0x3555];
  const halfWant = [1, -2, 0.5, Infinity, -Infinity, 2 ** -24, 65504, -0, NaN, 0.333251953125];
  const bf = [0x3f80, 0xc000, 0x3f00, 0x7f80, 0x4049, 0x0001];
  const bfWant = [1, -2, 0.5, Infinity, 3.140625, new Float32Array(new Uint32Array([0x00010000]).buffer)[0]];
  const data = new Uint8Array((half.length + bf.length) * 2);
  const dv = new DataView(data.buffer);
  half.forEach((h, i) => dv.setUint16(2 * i, h, true));
  bf.forEach((h, i) => dv.setUint16(2 * (half.length + i), h, true));
  const file = craft(
    path.join(dir, 'half.safetensors'),
    {
      h: { dtype: 'F16', shape: [half.length], data_offsets: [0, half.length * 2] },
      b: { dtype: 'BF16', shape: [2, 3], data_offsets: [half.length * 2, data.length] },
    },
    data,
  );
  const st = SafetensorsFile.open(file);
  t.after(() => st.close());
  const h = st.read('h');
  assert.equal(h.dtype, 'float32');
  assert.deepEqual([...h.data as Float32Array], halfWant);
  assert.ok(Object.is(h.data[7], -0), 'negative zero kept');
  const b = st.read('b');
  assert.equal(b.dtype, 'float32');
  assert.deepEqual(b.shape, [2, 3]);
  assert.deepEqual([...b.data as Float32Array], bfWant);
});

test('reads the parity-a weight and io files', { skip: noFixtures }, (t) => {
  const unet = SafetensorsFile.open(path.join(parityA, 'sd/unet/diffusion_pytorch_model.safetensors'));
  t.after(() => unet.close());
  assert.deepEqual(unet.info('conv_in.weight'), { dtype: 'F32', shape: [32, 4, 3, 3] });
  const w = unet.read('conv_in.weight');
  assert.equal(w.dtype, 'float32');
  assert.equal(w.data.length, 32 * 4 * 9);
  assert.ok((w.data as Float32Array).every(Number.isFinite));
  assert.ok((w.data as Float32Array).some((v) => v !== 0));
  assert.equal(unet.metadata.format, 'pt');

  const io = SafetensorsFile.open(path.join(parityA, 'io.safetensors'));
  t.after(() => io.close());
  const idx = io.read('vre.indices');
  assert.equal(idx.dtype, 'int64');
  assert.deepEqual(idx.shape, [2, 77]);
  assert.ok(idx.data instanceof BigInt64Array);
  assert.ok([...idx.data].every((v) => v >= -1n && v < 512n));
  const ts = io.read('unet.timestep');
  assert.deepEqual(ts.shape, []);
  assert.deepEqual([...ts.data as BigInt64Array], [399n]);
  const acp = io.read('scheduler.alphas_cumprod');
  assert.deepEqual(acp.shape, [1000]);
  // alphas_cumprod starts at 1 - 0.00085 and decreases
  assert.ok(Math.abs(acp.data[0] as number - 0.99915) < 1e-6);
  const all = io.readAll();
  assert.equal(all.size, io.keys().length);
});

test('truncated and malformed headers are rejected, naming the file', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const tiny = path.join(dir, 'tiny.safetensors');
  fs.writeFileSync(tiny, Buffer.from([1, 2, 3]));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(tiny), tiny, 'too short', 'found 3');

  const longHeader = craft(path.join(dir, 'long.safetensors'), '{}', new Uint8Array(0), 1000n);
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(longHeader), longHeader, 'header length is larger than the file', '1000');

  const hugeLen = craft(path.join(dir, 'huge.safetensors'), '{}', new Uint8Array(0), 2n ** 63n);
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(hugeLen), hugeLen, 'header length is larger');

  const badJson = craft(path.join(dir, 'json.safetensors'), '{"a": {"dtype": "F32",');
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(badJson), badJson, 'not valid UTF-8 JSON');

  const notObj = craft(path.join(dir, 'arr.safetensors'), '[1, 2]');
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(notObj), notObj, 'not a JSON object');

  const noShape = craft(path.join(dir, 'noshape.safetensors'), { w: { dtype: 'F32', data_offsets: [0, 4] } }, new Uint8Array(4));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(noShape), noShape, "'w'", 'shape');

  const noOffsets = craft(path.join(dir, 'nooff.safetensors'), { w: { dtype: 'F32', shape: [1] } }, new Uint8Array(4));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(noOffsets), noOffsets, "'w'", 'data_offsets');

  const badDtype = craft(path.join(dir, 'dtype.safetensors'), { w: { dtype: 'Q7', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(badDtype), badDtype, "'w'", "'Q7'");
});

test('bad data_offsets are rejected, naming file and key', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const outside = craft(
    path.join(dir, 'outside.safetensors'),
    { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } },
    new Uint8Array(12),
  );
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(outside), outside, "'b'", 'outside the file', 'end <= 12');

  const wrongSize = craft(path.join(dir, 'size.safetensors'), { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(16));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(wrongSize), wrongSize, "'a'", 'expected 16 bytes', 'found 12');

  const overlap = craft(
    path.join(dir, 'overlap.safetensors'),
    { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
    new Uint8Array(12),
  );
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(overlap), overlap, "'b'", "'a'", 'overlaps');

  const reversed = craft(path.join(dir, 'rev.safetensors'), { a: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, new Uint8Array(4));
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(reversed), reversed, "'a'", 'begin > end');
});

test('missing key lists similar keys; missing file says it does not exist', (t) => {
  const dir = tempDir(t, 'osdface-st-');
  const file = path.join(dir, 'k.safetensors');
  const z = { dtype: 'float32' as const, shape: [1], data: new Float32Array(1) };
  writeSafetensors(file, { 'down.0.conv1.weight': z, 'down.0.conv2.weight': z, 'up.1.norm.bias': z });
  const st = SafetensorsFile.open(file);
  t.after(() => st.close());
  const err = throwsWeightErrorNamingFile(() => st.read('down.0.conv1.weights'), file, "'down.0.conv1.weights'", 'Similar keys', "'down.0.conv1.weight'");
  assert.equal(err.key, 'down.0.conv1.weights');
  throwsWeightErrorNamingFile(() => st.info('nothing.like.this.at.all.xyz'), file, 'no tensor named');

  const missing = path.join(dir, 'nope.safetensors');
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(missing), missing, 'does not exist');
  throwsWeightErrorNamingFile(() => SafetensorsFile.open(dir), dir, 'is a directory');

  st.close();
  throwsWeightErrorNamingFile(() => st.read('up.1.norm.bias'), file, 'closed');
});

test('similarKeys prefers keys sharing the dotted suffix', () => {
  const keys = ['encoder.conv_in.weight', 'decoder.conv_in.weight', 'encoder.conv_out.weight', 'x'];
  assert.deepEqual(similarKeys('vqvae.encoder.conv_in.weight', keys, 2), ['encoder.conv_in.weight', 'decoder.conv_in.weight']);
  assert.deepEqual(similarKeys('zzzzzzzzzzzzzzzzzzzzzzzz', keys), []);
});

test('decodeElements handles unaligned buffers and narrow integer types', () => {
  const b = Buffer.alloc(13);
  b.writeFloatLE(1.5, 1);
  b.writeFloatLE(-2, 5);
  b.writeFloatLE(3, 9);
  assert.deepEqual(decodeElements(b.subarray(1), 'F32', 3), { dtype: 'float32', data: new Float32Array([1.5, -2, 3]) });
  const i16 = Buffer.alloc(5);
  i16.writeInt16LE(-300, 1);
  i16.writeInt16LE(7, 3);
  assert.deepEqual(decodeElements(i16.subarray(1), 'I16', 2), { dtype: 'int32', data: new Int32Array([-300, 7]) });
  // big-endian source (torch archives with byteorder 'big')
  const be = Buffer.alloc(8);
  be.writeDoubleBE(0.25);
  assert.deepEqual(decodeElements(be, 'F64', 1, false), { dtype: 'float32', data: new Float32Array([0.25]) });
  assert.throws(() => decodeElements(new Uint8Array(4), 'U32', 1), /U32/);
});
