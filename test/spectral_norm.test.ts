import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpectralNorm } from '../src/train/spectral_norm.js';

/** A 3x4 matrix with singular values 5, 2, 0.5: U diag(s) V^T with U a rotation of the first two rows and V a permutation with signs. */
function knownMatrix(): Float32Array {
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const u = [[c, -s, 0], [s, c, 0], [0, 0, 1]];
  const v = [[0, 1, 0, 0], [0, 0, 0, -1], [1, 0, 0, 0]]; // rows: the right singular vectors
  const sv = [5, 2, 0.5];
  const w = new Float32Array(12);
  for (let r = 0; r < 3; r++) for (let col = 0; col < 4; col++) for (let k = 0; k < 3; k++) w[r * 4 + col]! += u[r]![k]! * sv[k]! * v[k]![col]!;
  return w;
}

test('spectral norm: W / sigma has largest singular value 1 (sigma 5 of a matrix built from its SVD), whatever the layout of the rest', () => {
  const sn = new SpectralNorm('test');
  const w = knownMatrix();
  // The same matrix as a (3, 1, 2, 2) convolution kernel: rows are output channels.
  const normalized = sn.normalize('conv.weight', w, [3, 1, 2, 2]);
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(normalized[i]! - w[i]! / 5) < 1e-5, `element ${i}: ${normalized[i]} against ${w[i]! / 5}`);
  assert.ok(SpectralNorm.applies('discriminator.heads.0.conv_in.weight', [32, 64, 3, 3]));
  assert.ok(!SpectralNorm.applies('discriminator.heads.0.conv_in.bias', [32]));
});

test('spectral norm: the gradient carried back to W matches finite differences of a loss of W / sigma(W)', () => {
  const w = knownMatrix();
  const shape = [3, 4];
  // loss(W) = <C, W / sigma(W)> for a fixed C; its gradient with respect to W / sigma is C.
  const c = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i * 1.7 + 0.2));
  const loss = (m: Float32Array) => {
    // sigma by many power iterations from a fresh state, independent of the instance under test.
    const fresh = new SpectralNorm('reference');
    let out = fresh.normalize('w', m, shape);
    for (let i = 0; i < 50; i++) out = fresh.normalize('w', m, shape);
    return out.reduce((s, v, i) => s + v * c[i]!, 0);
  };
  const sn = new SpectralNorm('test');
  sn.normalize('w', w, shape);
  const grad = sn.gradient('w', w, c);
  const h = 1e-3;
  for (let i = 0; i < 12; i++) {
    const plus = Float32Array.from(w);
    const minus = Float32Array.from(w);
    plus[i]! += h;
    minus[i]! -= h;
    const numeric = (loss(plus) - loss(minus)) / (2 * h);
    assert.ok(Math.abs(numeric - grad[i]!) < 2e-3, `element ${i}: analytic ${grad[i]}, numeric ${numeric}`);
  }
  assert.throws(() => sn.gradient('other', w, c), /'other' was never normalized/);
});

test('spectral norm: an evaluation (advance false) leaves the power iteration where training left it', () => {
  const w = knownMatrix();
  const a = new SpectralNorm('seed');
  const b = new SpectralNorm('seed');
  a.normalize('w', w, [3, 4]);
  b.normalize('w', w, [3, 4]);
  b.normalize('w', w, [3, 4], false);
  assert.deepEqual(a.vectors().get('w'), b.vectors().get('w'));
  const c = new SpectralNorm('seed');
  c.restore('w', a.vectors().get('w')!);
  assert.deepEqual(c.normalize('w', w, [3, 4]), a.normalize('w', w, [3, 4]), 'a restored u goes on as the original');
});
