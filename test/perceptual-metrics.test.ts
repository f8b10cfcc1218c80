/**
 * LPIPS, DISTS and FID networks: parameter names and shapes exactly as the standard checkpoints
 * have them (lists written here from the architecture definitions: torchvision's alexnet / vgg16 /
 * inception_v3 modules, lpips' NetLinLayer), metric identities with synthetic weights, LPIPS
 * against a direct JavaScript computation, and, opt-in, published values for fixed images.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LpipsMetric, LpipsNetwork, LPIPS_SCALE, LPIPS_SHIFT, lpipsKey, loadLpipsWeights, type LpipsNet } from '../src/metrics/lpips.js';
import { DistsMetric } from '../src/metrics/dists_metric.js';
import { Dists } from '../src/train/dists.js';
import { FidFeatureExtractor, featureStats, fidFromStats, loadFidStats } from '../src/metrics/fid.js';
import { FidInception } from '../src/metrics/fid_inception.js';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { Random } from '../src/degrade/random.js';
import { writeSafetensors } from '../src/weights/safetensors.js';
import { tempDir, throwsWeightError } from './helpers.js';

const numelOf = (s: number[]) => s.reduce((a, b) => a * b, 1);

function randomImage(seed: string, w: number, h: number): RgbImage {
  const r = new Random(seed);
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(256 * (0.5 + 0.35 * Math.sin(i / 23 + seed.length) + 0.15 * (r.random() - 0.5)));
  return { data, width: w, height: h, channels: 3 };
}

/** Weights ~ U(-1, 1) * sqrt(3 / fan_in) (unit-variance activations), biases small, lin weights positive like LPIPS'. */
function syntheticWeights(params: [string, number[]][], seed: string): Map<string, Float32Array> {
  const r = new Random(seed);
  return new Map(params.map(([k, s]) => {
    const v = new Float32Array(numelOf(s));
    const fanIn = s.length > 1 ? numelOf(s.slice(1)) : 1;
    for (let i = 0; i < v.length; i++) {
      const u = 2 * r.random() - 1;
      if (/lin\d\.model/.test(k)) v[i] = 0.1 + r.random();
      else if (k.endsWith('running_var')) v[i] = 0.5 + r.random();
      else if (k.endsWith('bn.weight')) v[i] = 0.5 + 0.5 * r.random();
      else if (s.length === 1) v[i] = 0.05 * u;
      else v[i] = u * Math.sqrt(6 / fanIn);
    }
    return [k, v];
  }));
}

// ---------------------------------------------------------------------------------------------
// Parameter lists from the architecture definitions

/** torchvision alexnet `features` convs: index, in, out, kernel. */
const ALEX_CONVS: [number, number, number, number][] = [[0, 3, 64, 11], [3, 64, 192, 5], [6, 192, 384, 3], [8, 384, 256, 3], [10, 256, 256, 3]];
/** torchvision vgg16 (cfg 'D') `features` convs. */
const VGG_CONVS: [number, number, number, number][] = [
  [0, 3, 64, 3], [2, 64, 64, 3], [5, 64, 128, 3], [7, 128, 128, 3], [10, 128, 256, 3], [12, 256, 256, 3], [14, 256, 256, 3],
  [17, 256, 512, 3], [19, 512, 512, 3], [21, 512, 512, 3], [24, 512, 512, 3], [26, 512, 512, 3], [28, 512, 512, 3],
];
const LIN_CHANNELS: Record<LpipsNet, number[]> = { alex: [64, 192, 384, 256, 256], vgg: [64, 128, 256, 512, 512] };

function lpipsExpected(net: LpipsNet): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const [i, cin, cout, k] of net === 'alex' ? ALEX_CONVS : VGG_CONVS) out.push([`features.${i}.weight`, [cout, cin, k, k]], [`features.${i}.bias`, [cout]]);
  LIN_CHANNELS[net].forEach((c, k) => out.push([`lin${k}.model.1.weight`, [1, c, 1, 1]]));
  return out;
}

/** torchvision inception_v3 BasicConv2d layers (no AuxLogits), in definition order: name, in, out, kh, kw. */
function inceptionConvs(): [string, number, number, number, number][] {
  const out: [string, number, number, number, number][] = [
    ['Conv2d_1a_3x3', 3, 32, 3, 3], ['Conv2d_2a_3x3', 32, 32, 3, 3], ['Conv2d_2b_3x3', 32, 64, 3, 3],
    ['Conv2d_3b_1x1', 64, 80, 1, 1], ['Conv2d_4a_3x3', 80, 192, 3, 3],
  ];
  const a = (m: string, cin: number, pf: number) => out.push(
    [`${m}.branch1x1`, cin, 64, 1, 1], [`${m}.branch5x5_1`, cin, 48, 1, 1], [`${m}.branch5x5_2`, 48, 64, 5, 5],
    [`${m}.branch3x3dbl_1`, cin, 64, 1, 1], [`${m}.branch3x3dbl_2`, 64, 96, 3, 3], [`${m}.branch3x3dbl_3`, 96, 96, 3, 3], [`${m}.branch_pool`, cin, pf, 1, 1]);
  const c = (m: string, c7: number) => out.push(
    [`${m}.branch1x1`, 768, 192, 1, 1], [`${m}.branch7x7_1`, 768, c7, 1, 1], [`${m}.branch7x7_2`, c7, c7, 1, 7], [`${m}.branch7x7_3`, c7, 192, 7, 1],
    [`${m}.branch7x7dbl_1`, 768, c7, 1, 1], [`${m}.branch7x7dbl_2`, c7, c7, 7, 1], [`${m}.branch7x7dbl_3`, c7, c7, 1, 7], [`${m}.branch7x7dbl_4`, c7, c7, 7, 1],
    [`${m}.branch7x7dbl_5`, c7, 192, 1, 7], [`${m}.branch_pool`, 768, 192, 1, 1]);
  const e = (m: string, cin: number) => out.push(
    [`${m}.branch1x1`, cin, 320, 1, 1], [`${m}.branch3x3_1`, cin, 384, 1, 1], [`${m}.branch3x3_2a`, 384, 384, 1, 3], [`${m}.branch3x3_2b`, 384, 384, 3, 1],
    [`${m}.branch3x3dbl_1`, cin, 448, 1, 1], [`${m}.branch3x3dbl_2`, 448, 384, 3, 3], [`${m}.branch3x3dbl_3a`, 384, 384, 1, 3], [`${m}.branch3x3dbl_3b`, 384, 384, 3, 1],
    [`${m}.branch_pool`, cin, 192, 1, 1]);
  a('Mixed_5b', 192, 32); a('Mixed_5c', 256, 64); a('Mixed_5d', 288, 64);
  out.push(['Mixed_6a.branch3x3', 288, 384, 3, 3], ['Mixed_6a.branch3x3dbl_1', 288, 64, 1, 1], ['Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3], ['Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3]);
  c('Mixed_6b', 128); c('Mixed_6c', 160); c('Mixed_6d', 160); c('Mixed_6e', 192);
  out.push(['Mixed_7a.branch3x3_1', 768, 192, 1, 1], ['Mixed_7a.branch3x3_2', 192, 320, 3, 3], ['Mixed_7a.branch7x7x3_1', 768, 192, 1, 1],
    ['Mixed_7a.branch7x7x3_2', 192, 192, 1, 7], ['Mixed_7a.branch7x7x3_3', 192, 192, 7, 1], ['Mixed_7a.branch7x7x3_4', 192, 192, 3, 3]);
  e('Mixed_7b', 1280); e('Mixed_7c', 2048);
  return out;
}

describe('parameter names and shapes are those of the standard checkpoints', () => {
  for (const net of ['alex', 'vgg'] as const) {
    test(`LPIPS-${net}: torchvision features.* and lin<k>.model.1.weight`, () => {
      assert.deepEqual(new LpipsNetwork(net).namedParameters(), lpipsExpected(net));
    });
  }

  test('backbone parameter counts match torchvision totals minus the classifier', () => {
    // torchvision: alexnet 61,100,840 and vgg16 138,357,544 parameters; classifier Linear layers
    // 9216->4096->4096->1000 and 25088->4096->4096->1000.
    const count = (net: LpipsNet) => new LpipsNetwork(net).namedParameters().filter(([k]) => k.startsWith('features.')).reduce((s, [, sh]) => s + numelOf(sh), 0);
    const fc = (dims: number[]) => dims.slice(1).reduce((s, d, i) => s + dims[i]! * d + d, 0);
    assert.equal(count('alex'), 61_100_840 - fc([9216, 4096, 4096, 1000]));
    assert.equal(count('vgg'), 138_357_544 - fc([25088, 4096, 4096, 1000]));
  });

  test('DISTS: vgg.features.* of VGG16 up to conv5_3 plus alpha/beta (1, 1475, 1, 1)', () => {
    const expected: [string, number[]][] = [['alpha', [1, 1475, 1, 1]], ['beta', [1, 1475, 1, 1]]];
    for (const [i, cin, cout, k] of VGG_CONVS) expected.push([`vgg.features.${i}.weight`, [cout, cin, k, k]], [`vgg.features.${i}.bias`, [cout]]);
    assert.deepEqual(new Dists().namedParameters(), expected);
  });

  test('FID Inception: pytorch-fid / torchvision inception_v3 BasicConv2d keys (conv.weight, bn.*)', () => {
    const expected: [string, number[]][] = [];
    for (const [name, cin, cout, kh, kw] of inceptionConvs()) {
      expected.push([`${name}.conv.weight`, [cout, cin, kh, kw]]);
      for (const b of ['weight', 'bias', 'running_mean', 'running_var']) expected.push([`${name}.bn.${b}`, [cout]]);
    }
    const actual = new FidInception().namedParameters();
    assert.deepEqual(actual, expected);
    assert.equal(inceptionConvs().length, 94);
    // torchvision inception_v3: 27,161,264 trainable parameters, of which AuxLogits (BasicConv2d
    // 768->128 1x1, 128->768 5x5, Linear 768->1000) and fc (2048->1000) are not part of FID.
    const trainable = actual.filter(([k]) => !k.includes('running_')).reduce((s, [, sh]) => s + numelOf(sh), 0);
    const aux = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000;
    assert.equal(trainable, 27_161_264 - aux - (2048 * 1000 + 1000));
  });

  test('checkpoint key spellings of the lpips and pyiqa modules map to ours', () => {
    assert.equal(lpipsKey('features.10.weight'), 'features.10.weight');
    assert.equal(lpipsKey('net.slice5.10.bias'), 'features.10.bias');
    assert.equal(lpipsKey('lin3.model.1.weight'), 'lin3.model.1.weight');
    assert.equal(lpipsKey('lins.3.model.1.weight'), 'lin3.model.1.weight');
    assert.equal(lpipsKey('classifier.1.weight'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// A direct JavaScript LPIPS, independent of the graph code: CHW arrays and plain loops.

interface Chw { c: number; h: number; w: number; d: Float64Array }

function conv2d(x: Chw, wt: Float32Array, bias: Float32Array | null, cout: number, k: number, stride: number, pad: number): Chw {
  const h = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const w = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const d = new Float64Array(cout * h * w);
  for (let o = 0; o < cout; o++) {
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
      let s = bias ? bias[o]! : 0;
      for (let c = 0; c < x.c; c++) for (let u = 0; u < k; u++) {
        const yy = i * stride + u - pad;
        if (yy < 0 || yy >= x.h) continue;
        for (let v = 0; v < k; v++) {
          const xx = j * stride + v - pad;
          if (xx < 0 || xx >= x.w) continue;
          s += wt[((o * x.c + c) * k + u) * k + v]! * x.d[(c * x.h + yy) * x.w + xx]!;
        }
      }
      d[(o * h + i) * w + j] = s;
    }
  }
  return { c: cout, h, w, d };
}
const relu = (x: Chw): Chw => ({ ...x, d: x.d.map((v) => Math.max(0, v)) });
function maxPool(x: Chw, k: number, s: number): Chw {
  const h = Math.floor((x.h - k) / s) + 1;
  const w = Math.floor((x.w - k) / s) + 1;
  const d = new Float64Array(x.c * h * w);
  for (let c = 0; c < x.c; c++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    let m = -Infinity;
    for (let u = 0; u < k; u++) for (let v = 0; v < k; v++) m = Math.max(m, x.d[(c * x.h + i * s + u) * x.w + j * s + v]!);
    d[(c * h + i) * w + j] = m;
  }
  return { c: x.c, h, w, d };
}

function directLpipsAlex(a: RgbImage, b: RgbImage, wts: Map<string, Float32Array>): number {
  const feats = (img: RgbImage): Chw[] => {
    const n = img.width * img.height;
    const d = new Float64Array(3 * n);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) d[c * n + i] = (img.data[3 * i + c]! / 127.5 - 1 - LPIPS_SHIFT[c]!) / LPIPS_SCALE[c]!;
    let x: Chw = { c: 3, h: img.height, w: img.width, d };
    const cv = (i: number, cout: number, k: number, s: number, p: number) => (x = relu(conv2d(x, wts.get(`features.${i}.weight`)!, wts.get(`features.${i}.bias`)!, cout, k, s, p)));
    const taps: Chw[] = [];
    taps.push(cv(0, 64, 11, 4, 2));
    x = maxPool(x, 3, 2);
    taps.push(cv(3, 192, 5, 1, 2));
    x = maxPool(x, 3, 2);
    taps.push(cv(6, 384, 3, 1, 1));
    taps.push(cv(8, 256, 3, 1, 1));
    taps.push(cv(10, 256, 3, 1, 1));
    return taps;
  };
  const fa = feats(a);
  const fb = feats(b);
  let total = 0;
  fa.forEach((x, k) => {
    const y = fb[k]!;
    const hw = x.h * x.w;
    const lin = wts.get(`lin${k}.model.1.weight`)!;
    let sum = 0;
    for (let p = 0; p < hw; p++) {
      let nx = 0;
      let ny = 0;
      for (let c = 0; c < x.c; c++) {
        nx += x.d[c * hw + p]! ** 2;
        ny += y.d[c * hw + p]! ** 2;
      }
      nx = Math.sqrt(nx) + 1e-10;
      ny = Math.sqrt(ny) + 1e-10;
      for (let c = 0; c < x.c; c++) sum += lin[c]! * (x.d[c * hw + p]! / nx - y.d[c * hw + p]! / ny) ** 2;
    }
    total += sum / hw;
  });
  return total;
}

describe('LPIPS with synthetic weights', () => {
  test('alex: matches a direct JavaScript computation; LPIPS(x, x) = 0; symmetric', async () => {
    const weights = syntheticWeights(new LpipsNetwork('alex').namedParameters(), 'lpips-alex');
    const m = await LpipsMetric.fromWeights('alex', weights, 1);
    try {
      const a = randomImage('a', 64, 48);
      const b = randomImage('bb', 64, 48);
      const d = await m.distance(a, b);
      const direct = directLpipsAlex(a, b, weights);
      assert.ok(direct > 0.01, `a non-trivial distance (${direct})`);
      assert.ok(Math.abs(d - direct) <= 1e-4 * direct, `graph ${d} vs direct ${direct}`);
      assert.equal(await m.distance(a, a), 0);
      const ba = await m.distance(b, a);
      assert.ok(Math.abs(ba - d) <= 1e-6 * d, `d(a,b) ${d} vs d(b,a) ${ba}`);
      await assert.rejects(m.distance(a, randomImage('c', 48, 48)), /sizes differ/);
    } finally {
      await m.dispose();
    }
  });

  test('vgg: LPIPS(x, x) = 0, symmetric, positive', async () => {
    const m = await LpipsMetric.fromWeights('vgg', syntheticWeights(new LpipsNetwork('vgg').namedParameters(), 'lpips-vgg'), 1);
    try {
      const a = randomImage('a', 32, 32);
      const b = randomImage('b2', 32, 32);
      const d = await m.distance(a, b);
      assert.ok(d > 0);
      assert.equal(await m.distance(b, b), 0);
      assert.ok(Math.abs((await m.distance(b, a)) - d) <= 1e-6 * d);
    } finally {
      await m.dispose();
    }
  });

  test('weights load from separate backbone and lin files; a missing key is named', (t) => {
    const dir = tempDir(t, 'osdface-lpips-');
    const w = syntheticWeights(new LpipsNetwork('alex').namedParameters(), 'files');
    const expected = new LpipsNetwork('alex').namedParameters();
    const write = (file: string, keys: [string, number[]][]) =>
      writeSafetensors(file, new Map(keys.map(([k, s]) => [k, { dtype: 'float32' as const, shape: s, data: w.get(k)! }])));
    const backbone = path.join(dir, 'alexnet.safetensors');
    const lin = path.join(dir, 'alex.safetensors');
    write(backbone, expected.filter(([k]) => k.startsWith('features.')));
    write(lin, expected.filter(([k]) => k.startsWith('lin')));
    const loaded = loadLpipsWeights('alex', [backbone, lin]);
    assert.deepEqual(loaded.get('lin2.model.1.weight'), w.get('lin2.model.1.weight'));
    const partial = path.join(dir, 'partial.safetensors');
    write(partial, expected.filter(([k]) => k.startsWith('lin') && k !== 'lin4.model.1.weight'));
    throwsWeightError(() => loadLpipsWeights('alex', [backbone, partial]), `${backbone}, ${partial}`, 'lin4.model.1.weight', 'missing');
  });
});

describe('DISTS metric with synthetic weights', () => {
  test('DISTS(x, x) = 0, symmetric, positive; one session per size', async () => {
    const params = new Dists().namedParameters();
    const weights = syntheticWeights(params, 'dists');
    for (const k of ['alpha', 'beta']) weights.set(k, weights.get(k)!.map((v) => 0.1 + Math.abs(v)));
    const m = DistsMetric.fromWeights(weights, 1);
    try {
      const a = randomImage('a', 32, 32);
      const b = randomImage('b3', 32, 32);
      const d = await m.distance(a, b);
      assert.ok(d > 0 && d < 1, `${d}`);
      assert.ok(Math.abs(await m.distance(a, a)) < 1e-6);
      assert.ok(Math.abs((await m.distance(b, a)) - d) <= 1e-5);
      await assert.rejects(m.distance(randomImage('s', 8, 8), randomImage('t', 8, 8)), /at least 16x16/);
    } finally {
      await m.dispose();
    }
  });
});

describe('FID with synthetic weights', () => {
  test('2048-d features at any input size; identical sets are at distance 0, different sets are not', async () => {
    const extractor = await FidFeatureExtractor.fromWeights(syntheticWeights(new FidInception().namedParameters(), 'fid'), 2);
    try {
      const imgs = [randomImage('f1', 64, 64), randomImage('f22', 64, 64), randomImage('f333', 80, 72)];
      const feats: Float32Array[] = [];
      for (const img of imgs) feats.push(await extractor.features(img));
      for (const f of feats) {
        assert.equal(f.length, 2048);
        assert.ok(f.every(Number.isFinite));
      }
      const s = featureStats(feats);
      assert.ok(Math.abs(fidFromStats(s, s)) < 1e-6 * Math.max(1, s.sigma.reduce((a, v, i) => (i % 2049 === 0 ? a + v : a), 0)));
      const other = featureStats([feats[0]!, feats[1]!]);
      assert.ok(fidFromStats(s, other) > 0);
      assert.throws(() => featureStats([feats[0]!]), /at least 2 images/);
    } finally {
      await extractor.dispose();
    }
  });

  test('reference statistics files: shape checks name the file', (t) => {
    const dir = tempDir(t, 'osdface-fid-');
    const f = path.join(dir, 'stats.safetensors');
    fs.writeFileSync(f, 'not a stats file');
    assert.throws(() => loadFidStats(path.join(dir, 'missing.pth')), /does not exist/);
    assert.throws(() => loadFidStats(f), /stats\.safetensors/);
  });
});

// ---------------------------------------------------------------------------------------------
// Published values (opt-in: the weights and images are not part of this repository)

/**
 * IQA-PyTorch (chaofengc/IQA-PyTorch, ResultsCalibra/ResultsCalibra.md): five TID2013 pairs
 * (ResultsCalibra/dist_dir/<name> against ref_dir/<name>) scored by the original implementations:
 * LPIPS(org) = richzhang's lpips, alex, v0.1; DISTS(org) = dingkeyan93's DISTS_pytorch.
 */
const CALIBRATION: Record<string, { lpips: number; dists: number }> = {
  'I03.bmp': { lpips: 0.7237, dists: 0.4742 },
  'I04.bmp': { lpips: 0.2572, dists: 0.1424 },
  'I06.bmp': { lpips: 0.0508, dists: 0.0682 },
  'I08.bmp': { lpips: 0.0521, dists: 0.0287 },
  'I19.bmp': { lpips: 0.4253, dists: 0.3123 },
};
const calibra = process.env.PYIQA_CALIBRA_DIR;

async function calibrationPairs(): Promise<[string, RgbImage, RgbImage][]> {
  const out: [string, RgbImage, RgbImage][] = [];
  for (const name of Object.keys(CALIBRATION)) {
    out.push([name, await decodeImage(path.join(calibra!, 'dist_dir', name)), await decodeImage(path.join(calibra!, 'ref_dir', name))]);
  }
  return out;
}

describe('published values (opt-in)', () => {
  const alexBackbone = process.env.LPIPS_ALEX_BACKBONE;
  const alexLin = process.env.LPIPS_ALEX_LIN;
  test('LPIPS alex v0.1 on the IQA-PyTorch calibration pairs', {
    skip: calibra && alexBackbone && alexLin ? false : 'set PYIQA_CALIBRA_DIR (IQA-PyTorch ResultsCalibra), LPIPS_ALEX_BACKBONE (alexnet-owt-7be5be79.pth), LPIPS_ALEX_LIN (lpips weights/v0.1/alex.pth)',
  }, async () => {
    const m = await LpipsMetric.load({ net: 'alex', backbone: alexBackbone, lin: alexLin });
    try {
      for (const [name, dist, ref] of await calibrationPairs()) {
        const v = await m.distance(dist, ref);
        assert.ok(Math.abs(v - CALIBRATION[name]!.lpips) <= 1e-3, `${name}: ${v} vs published ${CALIBRATION[name]!.lpips}`);
      }
    } finally {
      await m.dispose();
    }
  });

  const distsFiles = process.env.DISTS_WEIGHTS?.split(',');
  test('DISTS on the IQA-PyTorch calibration pairs', {
    skip: calibra && distsFiles ? false : 'set PYIQA_CALIBRA_DIR and DISTS_WEIGHTS=<vgg16-397923af.pth>,<DISTS weights.pt>',
  }, async () => {
    const m = await DistsMetric.load({ weights: distsFiles });
    try {
      for (const [name, dist, ref] of await calibrationPairs()) {
        const v = await m.distance(dist, ref);
        assert.ok(Math.abs(v - CALIBRATION[name]!.dists) <= 1e-3, `${name}: ${v} vs published ${CALIBRATION[name]!.dists}`);
      }
    } finally {
      await m.dispose();
    }
  });
});
