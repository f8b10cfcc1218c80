import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filter2D } from '../src/degrade/ops.js';
import { gaussianKernel } from '../src/degrade/recipe.js';
import { OnnxFilter2D } from '../src/degrade/filter_onnx.js';
import { Random } from '../src/degrade/random.js';

test('OnnxFilter2D gives filter2D\'s blur (reflected border, anisotropic kernel, non-square image)', async () => {
  const rng = new Random('filter-onnx');
  const img = { data: Float32Array.from({ length: 37 * 53 * 3 }, () => rng.random()), width: 53, height: 37 };
  const onnx = new OnnxFilter2D(1);
  try {
    for (const [sx, sy, rot] of [[2.5, 2.5, 0], [6, 1.2, 0.7]] as const) {
      const kernel = gaussianKernel(21, sx, sy, rot);
      const want = filter2D(img, kernel, 21);
      const got = await onnx.apply(img, kernel, 21);
      assert.equal(got.width, 53);
      assert.equal(got.height, 37);
      let err = 0;
      for (let i = 0; i < want.data.length; i++) err = Math.max(err, Math.abs(got.data[i]! - want.data[i]!));
      assert.ok(err < 1e-5, `max difference ${err}`);
    }
  } finally {
    await onnx.dispose();
  }
});
