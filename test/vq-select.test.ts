import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectCodes } from '../src/models/vre/vq_select.js';
import { floatTensor } from '../src/tensor.js';

const codebook = floatTensor([5, 2], Float32Array.from([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]));
const dist = (rows: number[][]) => ({ dtype: 'float32' as const, shape: [rows.length, rows[0]!.length], data: Float32Array.from(rows.flat()) });
const idx = (rows: number[][]) => ({ dtype: 'int64' as const, shape: [rows.length, rows[0]!.length], data: BigInt64Array.from(rows.flat().map(BigInt)) });

test('codes are taken in order of distance, without repeats, per sample (batch > 1)', () => {
  const { tokens, indices } = selectCodes(
    dist([[0.5, 0.1, 0.3, 0.2], [0.9, 0.8, 0.7, 0.6]]),
    idx([[4, 2, 2, 1], [0, 1, 0, 3]]),
    codebook, 3,
  );
  // Sample 0: positions by distance 1 (code 2), 3 (code 1), 2 (code 2 again), 0 (code 4).
  // Sample 1: positions 3 (code 3), 2 (code 0), 1 (code 1).
  assert.deepEqual(Array.from(indices.data, Number), [2, 1, 4, 3, 0, 1]);
  assert.deepEqual(Array.from(tokens.data), [2, 2, 1, 1, 4, 4, 3, 3, 0, 0, 1, 1]);
});

test('fewer distinct codes than n_min leave zero rows marked -1', () => {
  const { tokens, indices } = selectCodes(dist([[0.2, 0.1, 0.3]]), idx([[3, 3, 4]]), codebook, 4);
  assert.deepEqual(Array.from(indices.data, Number), [3, 4, -1, -1]);
  assert.deepEqual(Array.from(tokens.data), [3, 3, 4, 4, 0, 0, 0, 0]);
});

test('an out-of-range code index is an error, not a silent read past the codebook', () => {
  assert.throws(() => selectCodes(dist([[0.1]]), idx([[7]]), codebook, 1), /code index 7 out of range 0\.\.4/);
});
