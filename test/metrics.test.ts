import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { psnr, ssim, ssimWindow1d, rgbToY } from '../src/metrics/psnr_ssim.js';
import { parseNpy, readNpz } from '../src/metrics/npz.js';
import { gamma, pinvSymmetric } from '../src/metrics/special.js';
import { imresize } from '../src/metrics/matlab_resize.js';
import { estimateAggd, loadNiqeParams, niqe } from '../src/metrics/niqe.js';
import { MetricUnavailableError, requireWeightFiles } from '../src/metrics/unavailable.js';
import { LpipsMetric } from '../src/metrics/lpips.js';
import { DistsMetric } from '../src/metrics/dists_metric.js';
import { FidFeatureExtractor } from '../src/metrics/fid.js';
import { Random } from '../src/degrade/random.js';
import { WeightFileError } from '../src/weights/errors.js';
import { shared, tempDir } from './helpers.js';

const NIQE_FILE = path.join(shared, 'weights/niqe_pris_params.npz');
const FACE = path.join(shared, 'data/faces-hq/test/ffhq_00000.png');

function image(w: number, h: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = f(x, y, c);
  return { data, width: w, height: h, channels: 3 };
}
const close = (actual: number, expected: number, tol: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} vs ${expected} (tolerance ${tol})`);

describe('PSNR', () => {
  const base = image(16, 12, (x, y, c) => 20 + ((x * 7 + y * 13 + c * 29) % 180));

  test('identical images: +Infinity (MSE 0)', () => {
    assert.equal(psnr(base, base), Infinity);
    assert.equal(psnr(base, base, { yChannel: true }), Infinity);
  });

  test('a constant offset d gives exactly 20 log10(255 / d)', () => {
    for (const d of [1, 5, 30]) {
      const moved = image(16, 12, (x, y, c) => base.data[(y * 16 + x) * 3 + c]! + d);
      close(psnr(base, moved), 20 * Math.log10(255 / d), 1e-12, `offset ${d}`);
    }
  });

  test('an offset d in one channel: MSE d²/3', () => {
    const moved = image(16, 12, (x, y, c) => base.data[(y * 16 + x) * 3 + c]! + (c === 1 ? 12 : 0));
    close(psnr(base, moved), 10 * Math.log10((3 * 255 * 255) / 144), 1e-12);
  });

  test('Y channel: an offset d in R, G and B moves Y by d·219/255 (65.481 + 128.553 + 24.966 = 219)', () => {
    const d = 10;
    const moved = image(16, 12, (x, y, c) => base.data[(y * 16 + x) * 3 + c]! + d);
    close(psnr(base, moved, { yChannel: true }), 20 * Math.log10(255 / ((d * 219) / 255)), 1e-4);
  });

  test('BT.601 Y of black, white and pure colours (MATLAB rgb2ycbcr: 16, 235, 16 + 65.481, ...)', () => {
    const px = image(5, 1, (x) => [0, 255, 0, 0, 0][x]!);
    const rgb: RgbImage = { data: Uint8Array.from([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255]), width: 5, height: 1, channels: 3 };
    void px;
    const y = rgbToY(rgb).data;
    const expected = [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966];
    for (let i = 0; i < 5; i++) close(y[i]!, expected[i]!, 2e-5);
  });

  test('size mismatch is an error', () => {
    assert.throws(() => psnr(base, image(12, 16, () => 0)), /sizes differ: 16x12 vs 12x16/);
  });
});

describe('SSIM', () => {
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;

  test('the window is cv2.getGaussianKernel(11, 1.5)', () => {
    const g = ssimWindow1d();
    close(g.reduce((a, b) => a + b, 0), 1, 1e-15);
    close(g[4]! / g[5]!, Math.exp(-1 / 4.5), 1e-15);
    close(g[0]! / g[5]!, Math.exp(-25 / 4.5), 1e-15);
  });

  test('identical images: 1', () => {
    const a = image(24, 20, (x, y, c) => (x * 11 + y * 5 + c * 50) % 256);
    close(ssim(a, a), 1, 1e-12);
    close(ssim(a, a, { yChannel: true }), 1, 1e-12);
  });

  test('two constant images a, b: (2ab + C1) / (a² + b² + C1)', () => {
    const a = image(15, 13, () => 100);
    const b = image(15, 13, () => 110);
    close(ssim(a, b), (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1), 1e-12);
  });

  test('an 11x11 hand case: one window, by the closed form', () => {
    // x = a + d·s, y = b + e·s with s = sign(column - 5). The Gaussian window is symmetric, so the
    // windowed mean of s is 0 and that of s² is 1 - g0 (g0 = the normalised centre weight of the
    // 1-D Gaussian): μx = a, μy = b, σx² = d²(1 - g0), σy² = e²(1 - g0), σxy = de(1 - g0).
    const s = (x: number) => Math.sign(x - 5);
    const [a, d, b, e] = [100, 50, 120, -30];
    const x = image(11, 11, (col) => a + d * s(col));
    const y = image(11, 11, (col) => b + e * s(col));
    let sum = 0;
    for (let k = -5; k <= 5; k++) sum += Math.exp(-(k * k) / 4.5);
    const v = 1 - 1 / sum;
    const expected = ((2 * a * b + c1) * (2 * d * e * v + c2)) / ((a * a + b * b + c1) * ((d * d + e * e) * v + c2));
    close(ssim(x, y), expected, 1e-12, 'RGB');
    // On Y the grey values map to 16 + 219/255·v: the same closed form with scaled a, b, d, e.
    const k = 219 / 255;
    const ey = ((2 * (16 + k * a) * (16 + k * b) + c1) * (2 * k * k * d * e * v + c2)) /
      (((16 + k * a) ** 2 + (16 + k * b) ** 2 + c1) * (k * k * (d * d + e * e) * v + c2));
    close(ssim(x, y, { yChannel: true }), ey, 1e-6, 'Y');
  });

  test('too small for the window is an error', () => {
    const a = image(10, 30, () => 1);
    assert.throws(() => ssim(a, a), /at least 11x11/);
  });
});

describe('npz / npy', () => {
  function npy(header: string, values: number[], f4 = false, version = 1): Uint8Array {
    let h = header;
    const pre = version === 1 ? 10 : 12;
    while ((pre + h.length + 1) % 64 !== 0) h += ' ';
    h += '\n';
    const out = Buffer.alloc(pre + h.length + values.length * (f4 ? 4 : 8));
    Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(out, 0);
    if (version === 1) out.writeUInt16LE(h.length, 8);
    else out.writeUInt32LE(h.length, 8);
    out.write(h, pre, 'latin1');
    values.forEach((v, i) => (f4 ? out.writeFloatLE(v, pre + h.length + 4 * i) : out.writeDoubleLE(v, pre + h.length + 8 * i)));
    return out;
  }

  test('v1 <f8 C order, v2 <f4, and Fortran order is transposed to C order', () => {
    const a = parseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", [1, 2, 3, 4, 5, 6]), 'x.npy');
    assert.deepEqual(a.shape, [2, 3]);
    assert.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5, 6]);
    const b = parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", [0.5, -2, 7], true, 2), 'x.npy');
    assert.deepEqual(Array.from(b.data), [0.5, -2, 7]);
    // column-major storage of [[1, 2, 3], [4, 5, 6]] is 1 4 2 5 3 6
    const f = parseNpy(npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", [1, 4, 2, 5, 3, 6]), 'x.npy');
    assert.deepEqual(Array.from(f.data), [1, 2, 3, 4, 5, 6]);
    const s = parseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", [3.5]), 'x.npy');
    assert.deepEqual([s.shape, Array.from(s.data)], [[], [3.5]]);
  });

  test('bad magic, other dtypes and truncated data are refused, naming the file and array', () => {
    assert.throws(() => parseNpy(Buffer.from('not numpy at all'), 'f.npz', 'mu'), (e: unknown) => e instanceof WeightFileError && /f\.npz: 'mu': not a \.npy/.test(e.message));
    assert.throws(() => parseNpy(npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", [1]), 'f.npz'), /unsupported dtype.*'<i4'/);
    const t = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", [1, 2]);
    assert.throws(() => parseNpy(t, 'f.npz'), /truncated/);
  });

  test('reads BasicSR niqe_pris_params.npz; its window is the authors\' fspecial(\'gaussian\', 7, 7/6)', () => {
    const arrays = readNpz(NIQE_FILE);
    assert.deepEqual([...arrays.keys()].sort(), ['cov_pris_param', 'gaussian_window', 'mu_pris_param']);
    const p = loadNiqeParams(NIQE_FILE);
    assert.equal(p.mu.length, 36);
    assert.equal(p.windowSize, 7);
    for (let i = 0; i < 36; i++) for (let j = 0; j < i; j++) close(p.cov[i * 36 + j]!, p.cov[j * 36 + i]!, 1e-12, 'symmetric');
    // niqe_release computequality.m: window = fspecial('gaussian', 7, 7/6); window = window / sum(window(:))
    const sigma = 7 / 6;
    let sum = 0;
    const g: number[] = [];
    for (let y = -3; y <= 3; y++) for (let x = -3; x <= 3; x++) g.push(Math.exp(-(x * x + y * y) / (2 * sigma * sigma)));
    for (const v of g) sum += v;
    g.forEach((v, i) => close(p.window[i]!, v / sum, 1e-7, `window ${i}`));
  });

  test('a file that is not an npz is a WeightFileError', (t) => {
    const dir = tempDir(t, 'osdface-npz-');
    const f = path.join(dir, 'bad.npz');
    fs.writeFileSync(f, 'hello');
    assert.throws(() => loadNiqeParams(f), (e: unknown) => e instanceof WeightFileError && e.file === f);
  });
});

describe('NIQE building blocks', () => {
  test('gamma against tabulated values', () => {
    close(gamma(0.5), Math.sqrt(Math.PI), 1e-14);
    close(gamma(1.5), Math.sqrt(Math.PI) / 2, 1e-14);
    close(gamma(5), 24, 1e-12);
    close(gamma(0.1), 9.513507698668731836, 1e-12);
    close(gamma(1 / 3), 2.678938534707747633, 1e-13);
    close(gamma(15), 87178291200, 1e-3);
  });

  test('pseudo-inverse of symmetric matrices', () => {
    const inv = pinvSymmetric(Float64Array.from([2, 1, 1, 2]), 2);
    [2 / 3, -1 / 3, -1 / 3, 2 / 3].forEach((v, i) => close(inv[i]!, v, 1e-14));
    const sing = pinvSymmetric(Float64Array.from([1, 1, 1, 1]), 2);
    for (const v of sing) close(v, 0.25, 1e-14);
  });

  test('AGGD fit of ±1 values: rhat = 1 is past the grid, so alpha = 10 and beta = sqrt(Γ(0.1) / Γ(0.3))', () => {
    const r = estimateAggd(Float64Array.from({ length: 100 }, (_, i) => (i % 2 ? 1 : -1)));
    assert.equal(Math.round(r.alpha * 1000), 10000);
    // Γ(0.1) = 9.5135076987, Γ(0.3) = 2.9915689877 (tables)
    close(r.betaL, Math.sqrt(9.5135076987 / 2.9915689877), 1e-9);
    close(r.betaR, r.betaL, 0);
  });

  test('AGGD fit of Gaussian samples: alpha near 2', () => {
    const rng = new Random('aggd');
    const r = estimateAggd(Float64Array.from({ length: 20000 }, () => rng.normal() * 3));
    close(r.alpha, 2, 0.08, 'alpha');
    // beta = sigma·sqrt(Γ(1/2)/Γ(3/2)) = sigma·sqrt(2) for alpha = 2
    close(r.betaL, 3 * Math.SQRT2, 0.15, 'beta');
  });

  test('MATLAB imresize 0.5: hand-computed antialiased cubic weights and symmetric edges', () => {
    // Output x maps to u = 2x - 0.5; taps at distances ±0.5 .. ±3.5 weigh 0.5·cubic(d/2):
    // cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375
    const w = [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875];
    const n = 16;
    for (let k = 0; k <= 8; k++) {
      const src = new Float64Array(n);
      src[4 + k] = 1; // output 5 (1-based) sits at u = 9.5: its taps are 1-based 6..13, 0-based 5..12
      const out = imresize({ data: src, width: n, height: 1 }, 0.5);
      assert.deepEqual([out.width, out.height], [8, 1]);
      close(out.data[4]!, k >= 1 ? w[k - 1]! : 0, 1e-15, `tap ${k}`);
    }
    // A ramp f(i) = i (1-based): interior outputs are 2x - 0.5; the first output mirrors
    // (indices -2, -1, 0 -> 3, 2, 1): 3w0 + 2w1 + w2 + w3 + 2w4 + 3w5 + 4w6 + 5w7 = 1.44921875
    const ramp = imresize({ data: Float64Array.from({ length: n }, (_, i) => i + 1), width: n, height: 1 }, 0.5);
    close(ramp.data[0]!, 1.44921875, 1e-15);
    for (let x = 3; x <= 6; x++) close(ramp.data[x - 1]!, 2 * x - 0.5, 1e-13);
    const odd = imresize({ data: new Float64Array(7 * 5).fill(3), width: 7, height: 5 }, 0.5);
    assert.deepEqual([odd.width, odd.height], [4, 3]);
    for (const v of odd.data) close(v, 3, 1e-14);
  });
});

describe('NIQE', () => {
  test('a sharp face scores better (lower) than its blurred copy; too small is an error', async () => {
    const params = loadNiqeParams(NIQE_FILE);
    const face = await decodeImage(FACE);
    // 288x192 crop of the face (6 blocks), and a 5x5 box-blurred copy
    const crop = image(288, 192, (x, y, c) => face.data[((400 + y) * face.width + 368 + x) * 3 + c]!);
    const blur = image(288, 192, (x, y, c) => {
      let s = 0;
      for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) {
        const sx = Math.min(287, Math.max(0, x + dx));
        const sy = Math.min(191, Math.max(0, y + dy));
        s += crop.data[(sy * 288 + sx) * 3 + c]!;
      }
      return Math.round(s / 25);
    });
    const sharp = niqe(crop, params);
    const blurred = niqe(blur, params);
    assert.ok(Number.isFinite(sharp) && sharp > 0);
    assert.ok(blurred > sharp + 1, `blurred ${blurred} vs sharp ${sharp}`);
    assert.equal(niqe(crop, params), sharp);
    assert.throws(() => niqe(image(96, 96, () => 0), params), /at least two 96x96 blocks/);
  });

  // BasicSR's NIQE test image (XPixelGroup/BasicSR test_scripts/data/baboon.png) is not part of
  // ../shared; point BASICSR_BABOON at a copy to check the published value.
  const baboon = process.env.BASICSR_BABOON;
  test('baboon.png: 5.7296 as published by BasicSR (5.7295763) and MATLAB (5.72957338)', { skip: baboon ? false : 'set BASICSR_BABOON to BasicSR test_scripts/data/baboon.png' }, async () => {
    const v = niqe(await decodeImage(baboon!), loadNiqeParams(NIQE_FILE));
    close(v, 5.7295763, 5e-5);
  });
});

describe('metrics that need network weights', () => {
  test('without weight files: a clear MetricUnavailableError naming what is needed and where it comes from', async () => {
    await assert.rejects(LpipsMetric.load({}), (e: unknown) => e instanceof MetricUnavailableError && e.needs === 'weights' && /AlexNet/.test(e.message) && /None of these is bundled/.test(e.message));
    await assert.rejects(LpipsMetric.load({ backbone: '/x/alexnet.pth' }), /linear layers \(--lpips-lin\)/);
    await assert.rejects(DistsMetric.load({}), /DISTS .*VGG16/);
    await assert.rejects(FidFeatureExtractor.load({}), /Inception/);
  });

  test('weight files that do not exist are named', async () => {
    await assert.rejects(LpipsMetric.load({ backbone: '/nonexistent/alexnet.pth', lin: '/nonexistent/alex.pth' }), /\/nonexistent\/alexnet\.pth does not exist/);
    assert.throws(() => requireWeightFiles('fid', ['/nonexistent/pt_inception.pth']), /pt_inception\.pth does not exist .*pytorch-fid/);
  });
});
