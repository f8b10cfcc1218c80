import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noWeights } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { DETAIL_ENERGY_PATCH, detailEnergy, detailEnergyDistance } from '../src/train/detail_energy.js';
import { type FloatTensor, floatTensor } from '../src/tensor.js';
import { Random } from '../src/degrade/random.js';

const [h, w] = [64, 96];
const patch = DETAIL_ENERGY_PATCH;

async function session() {
  const g = new Graph('detail_energy');
  const x = g.input('x', 'float32', [1, 3, h, w]);
  const y = g.input('y', 'float32', [1, 3, h, w]);
  g.output(detailEnergy(g, x, patch), 'energy');
  g.output(detailEnergyDistance(g, x, y, patch), 'distance');
  const s = await OnnxSession.create(emitOnnx(g, { weights: noWeights }), { threads: 1 });
  return async (a: FloatTensor, b: FloatTensor) => {
    const out = await s.run({ x: a, y: b });
    return { energy: out.energy!.data as Float32Array, distance: out.distance!.data[0] as number };
  };
}

/** Grey 0.5 plus `amplitude`-sigma white noise, the same in every channel, where `where(y, x)`. */
function noise(seed: string, amplitude: number, where: (y: number, x: number) => boolean = () => true): FloatTensor {
  const rand = new Random(seed);
  const t = floatTensor([1, 3, h, w]);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = 0.5 + (where(y, x) ? amplitude * rand.normal() : 0);
    for (let c = 0; c < 3; c++) t.data[(c * h + y) * w + x] = v;
  }
  return t;
}

test('detail energy: white noise of sigma s has a finest-band RMS of 0.891 s (1 - 2·(6/16)² + (70/256)²), in every interior patch', async () => {
  const run = await session();
  const s = 0.04;
  const { energy } = await run(noise('energy', s), noise('energy', s));
  const [ph, pw] = [h / patch, w / patch];
  assert.equal(energy.length, 2 * ph * pw);
  let sum = 0;
  let n = 0;
  for (let py = 1; py < ph - 1; py++) for (let px = 1; px < pw - 1; px++) { sum += energy[py * pw + px]!; n++; }
  const expected = s * Math.sqrt(1 - 2 * (6 / 16) ** 2 + (70 / 256) ** 2);
  assert.ok(Math.abs(sum / n - expected) < 0.05 * expected, `interior band-1 RMS ${sum / n} against ${expected}`);
  const flat = (await run(noise('flat', 0), noise('flat', 0))).energy;
  assert.ok(flat.every((v) => Math.abs(v - 1e-3) < 1e-5), 'a flat image has the floor energy alone');
});

test('detail energy distance: another texture of the same amplitude in the same places costs little; the same amount spread evenly or taken away costs much more', async () => {
  const run = await session();
  const hair = (y: number) => y < h / 2;
  const target = noise('target', 0.05, hair);
  const samePlaces = (await run(noise('other', 0.05, hair), target)).distance;
  const spread = (await run(noise('spread', 0.05 / Math.SQRT2), target)).distance;
  const none = (await run(noise('none', 0), target)).distance;
  assert.equal((await run(target, target)).distance, 0);
  assert.ok(spread > 20 * samePlaces && none > 20 * samePlaces, `same places ${samePlaces}, spread evenly ${spread}, none ${none}`);
});
