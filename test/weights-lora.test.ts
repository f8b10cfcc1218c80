import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { mergeLora } from '../src/weights/lora.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { type FloatTensor, type Tensor, floatTensor } from '../src/tensor.js';
import { noFixtures, parityA, throwsWeightError } from './helpers.js';

const f = (shape: number[], values: number[]): FloatTensor => floatTensor(shape, Float32Array.from(values));

test('2-D merge matches a hand-computed W + (alpha/rank) B@A', () => {
  const W = f([3, 2], [1, 2, 3, 4, 5, 6]);
  const weights = new Map([['blk.to_q.weight', W]]);
  const lora = new Map<string, Tensor>([
    ['unet.blk.to_q.lora_A.weight', f([2, 2], [1, 2, 3, -1])],
    ['unet.blk.to_q.lora_B.weight', f([3, 2], [1, 0, 0, 1, 1, 1])],
  ]);
  // B@A = [[1,2],[3,-1],[4,1]], scale = 4/2 = 2
  assert.deepEqual(mergeLora(weights, lora, { alpha: 4 }), { merged: 1 });
  const out = weights.get('blk.to_q.weight')!;
  assert.deepEqual(out.shape, [3, 2]);
  assert.deepEqual([...out.data], [3, 6, 9, 2, 13, 8]);
  // The previous tensor object is not mutated (it may be shared); the map entry is replaced.
  assert.notEqual(out, W);
  assert.deepEqual([...W.data], [1, 2, 3, 4, 5, 6]);
});

test('4-D conv merge reshapes B@A to the kernel shape', () => {
  const weights = new Map([['conv1.weight', f([2, 1, 2, 2], [1, 1, 1, 1, 0, 0, 0, 0])]]);
  const lora = new Map<string, Tensor>([
    ['conv1.lora.down.weight', f([1, 1, 2, 2], [1, 2, 3, 4])],
    ['conv1.lora.up.weight', f([2, 1, 1, 1], [1, -1])],
  ]);
  mergeLora(weights, lora, { alpha: 0.5, rank: 1 });
  assert.deepEqual([...weights.get('conv1.weight')!.data], [1.5, 2, 2.5, 3, -0.5, -1, -1.5, -2]);

  // rank 2, 3x3 kernel, 2 in-channels: compare against a float64 evaluation
  const out = 3, cin = 2, r = 2, k = 9;
  const Wv = Array.from({ length: out * cin * k }, (_, i) => Math.sin(i));
  const Av = Array.from({ length: r * cin * k }, (_, i) => Math.cos(i * 0.7));
  const Bv = Array.from({ length: out * r }, (_, i) => i - 2.5);
  const w2 = new Map([['c.weight', f([out, cin, 3, 3], Wv)]]);
  mergeLora(w2, new Map<string, Tensor>([['c.lora_A.weight', f([r, cin, 3, 3], Av)], ['c.lora_B.weight', f([out, r, 1, 1], Bv)]]), { alpha: 3 });
  const got = w2.get('c.weight')!.data;
  const A32 = Float32Array.from(Av), B32 = Float32Array.from(Bv), W32 = Float32Array.from(Wv);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < cin * k; j++) {
      let s = 0;
      for (let q = 0; q < r; q++) s += B32[o * r + q] * A32[q * cin * k + j];
      const want = W32[o * cin * k + j] + 1.5 * s;
      assert.ok(Math.abs(got[o * cin * k + j] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `(${o},${j}): ${got[o * cin * k + j]} vs ${want}`);
    }
  }
});

test('PEFT, lora.down/up and attention-processor key styles all land', () => {
  const eye = (n: number) => f([n, n], Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)));
  const weights = new Map<string, FloatTensor>([
    ['a.attn1.to_q.weight', eye(2)],
    ['mid.proj_in.weight', eye(2)],
    ['up.attn2.to_out.0.weight', eye(2)],
    ['up.attn2.to_k.weight', eye(2)],
    ['ff.net.2.weight', eye(2)],
    ['untouched.weight', eye(2)],
  ]);
  const A = f([1, 2], [1, 1]);
  const B = f([2, 1], [1, 0]);
  const lora = new Map<string, Tensor>([
    ['unet.a.attn1.to_q.lora_A.weight', A],
    ['unet.a.attn1.to_q.lora_B.weight', B],
    ['mid.proj_in.lora.down.weight', A],
    ['mid.proj_in.lora.up.weight', B],
    ['unet.up.attn2.processor.to_out_lora.down.weight', A],
    ['unet.up.attn2.processor.to_out_lora.up.weight', B],
    ['up.attn2.processor.to_k_lora.down.weight', A],
    ['up.attn2.processor.to_k_lora.up.weight', B],
    ['unet.ff.net.2.lora_A.default.weight', A],
    ['unet.ff.net.2.lora_B.default.weight', B],
  ]);
  const untouched = weights.get('untouched.weight');
  assert.deepEqual(mergeLora(weights, lora, { alpha: 1 }), { merged: 5 });
  for (const k of ['a.attn1.to_q.weight', 'mid.proj_in.weight', 'up.attn2.to_out.0.weight', 'up.attn2.to_k.weight', 'ff.net.2.weight']) {
    assert.deepEqual([...weights.get(k)!.data], [2, 1, 0, 1], k);
  }
  assert.equal(weights.get('untouched.weight'), untouched);
});

test('unmatched keys, missing partners and shape mismatches are errors naming file and key', () => {
  const file = 'lora.safetensors';
  const base = () => new Map([['m.weight', f([2, 3], [1, 2, 3, 4, 5, 6])], ['c.weight', f([2, 3, 3, 3], new Array(54).fill(0))]]);
  const A = f([1, 3], [1, 1, 1]);
  const B = f([2, 1], [1, 1]);
  const check = (lora: [string, Tensor][], opts: { rank?: number }, ...fragments: string[]) => {
    const weights = base();
    const before = [...weights.entries()];
    const err = throwsWeightError(() => mergeLora(weights, new Map(lora), { alpha: 1, file, ...opts }), file, ...fragments);
    assert.deepEqual([...weights.entries()], before, 'weights must be untouched after an error');
    return err;
  };

  const e1 = check([['unet.nothere.lora_A.weight', A], ['unet.nothere.lora_B.weight', B]], {}, "'unet.nothere.lora_A.weight'", "'nothere.weight'", 'does not have');
  assert.equal(e1.key, 'unet.nothere.lora_A.weight');
  check([['unet.m.lora_A.weight', A]], {}, "'unet.m.lora_A.weight'", 'no up/B partner', 'found none');
  check([['m.lora.up.weight', B]], {}, "'m.lora.up.weight'", 'no down/A partner');
  check([['unet.m.lora_A.weight', f([1, 2], [1, 1])], ['unet.m.lora_B.weight', B]], {}, "'unet.m.lora_A.weight'", 'expected [1, 3]', 'found [1, 2]');
  check([['unet.m.lora_A.weight', A], ['unet.m.lora_B.weight', f([3, 1], [1, 1, 1])]], {}, "'unet.m.lora_B.weight'", 'expected [2, 1]', 'found [3, 1]');
  check([['unet.c.lora_A.weight', f([1, 3, 1, 1], [1, 1, 1])], ['unet.c.lora_B.weight', f([2, 1, 1, 1], [1, 1])]], {}, "'unet.c.lora_A.weight'", 'expected [1, 3, 3, 3]', 'found [1, 3, 1, 1]');
  check([['unet.m.lora_A.weight', A], ['unet.m.lora_B.weight', B]], { rank: 4 }, "'unet.m.lora_A.weight'", 'rank 1', 'rank 4');
  check([['unet.m.alpha', f([], [8])]], {}, "'unet.m.alpha'", 'not a recognised LoRA weight name');
  check([['unet.m.lora_A.weight', A], ['unet.m.lora.down.weight', A]], {}, "'unet.m.lora.down.weight'", 'already targets');
});

test('parity-a LoRA merges into the parity-a UNet: 166 modules, 332 tensors', { skip: noFixtures }, (t) => {
  const unet = SafetensorsFile.open(path.join(parityA, 'sd/unet/diffusion_pytorch_model.safetensors'));
  const loraFile = path.join(parityA, 'osdface/pytorch_lora_weights.safetensors');
  const loraSt = SafetensorsFile.open(loraFile);
  t.after(() => {
    unet.close();
    loraSt.close();
  });
  const weights = new Map<string, FloatTensor>();
  for (const k of unet.keys()) weights.set(k, unet.read(k) as FloatTensor);
  const before = new Map(weights);
  const lora = loraSt.readAll();
  assert.equal(lora.size, 332);

  assert.deepEqual(mergeLora(weights, lora, { alpha: 8, rank: 4, file: loraFile }), { merged: 166 });
  const changed = [...weights.keys()].filter((k) => weights.get(k) !== before.get(k));
  assert.equal(changed.length, 166);
  assert.equal(weights.size, before.size);

  // Spot-check a linear and a conv target against a float64 evaluation of W + 2 * B@A.
  for (const mod of ['down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q', 'up_blocks.1.resnets.0.conv1']) {
    const W = before.get(`${mod}.weight`)!;
    const A = lora.get(`unet.${mod}.lora_A.weight`)!.data as Float32Array;
    const B = lora.get(`unet.${mod}.lora_B.weight`)!.data as Float32Array;
    const got = weights.get(`${mod}.weight`)!;
    assert.deepEqual(got.shape, W.shape);
    const out = W.shape[0];
    const inner = W.data.length / out;
    let maxDiff = 0;
    let maxRef = 0;
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < inner; j++) {
        let s = 0;
        for (let r = 0; r < 4; r++) s += B[o * 4 + r] * A[r * inner + j];
        const want = W.data[o * inner + j] + 2 * s;
        maxDiff = Math.max(maxDiff, Math.abs(got.data[o * inner + j] - want));
        maxRef = Math.max(maxRef, Math.abs(want));
      }
    }
    assert.ok(maxDiff <= 1e-6 * maxRef, `${mod}: max diff ${maxDiff} (max |W'| ${maxRef})`);
    // the update is a sizeable fraction of W (the fixture makes it ~0.3x), so a no-op would fail
    assert.ok(got.data.some((v, i) => Math.abs(v - W.data[i]) > 1e-3));
  }
});
