import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { decodeImage, encodeImage, type RgbImage } from '../src/image/io.js';
import {
  addGaussianNoise, addPoissonNoise, filter2D, jpegRoundTrip, reflect101, resize, roundHalfEven, toBytes, toFloat, type FloatImage,
} from '../src/degrade/ops.js';
import { Random } from '../src/degrade/random.js';
import { degrade, gaussianKernel, PRESETS, checkConfig } from '../src/degrade/recipe.js';
import { main as degradeMain } from '../src/cli/degrade.js';
import { tempDir } from './helpers.js';

const floatImage = (w: number, h: number, f: (x: number, y: number, c: number) => number): FloatImage => {
  const data = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = f(x, y, c);
  return { data, width: w, height: h };
};
const row = (img: FloatImage, c = 0) => Array.from({ length: img.width }, (_, x) => img.data[x * 3 + c]!);

/** A small smooth test picture with some texture, 8-bit. */
function testPicture(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      data[i] = (x * 255) / (w - 1);
      data[i + 1] = (y * 255) / (h - 1);
      data[i + 2] = ((x ^ y) & 4) ? 200 : 40;
    }
  }
  return { data, width: w, height: h, channels: 3 };
}

describe('Random', () => {
  test('same key, same sequence; different keys differ', () => {
    const a = new Random('0:face');
    const b = new Random('0:face');
    const c = new Random('1:face');
    const sa = Array.from({ length: 8 }, () => a.nextUint32());
    assert.deepEqual(sa, Array.from({ length: 8 }, () => b.nextUint32()));
    assert.notDeepEqual(sa, Array.from({ length: 8 }, () => c.nextUint32()));
  });

  test('uniform, normal and Poisson have the right moments', () => {
    const r = new Random('moments');
    const n = 20000;
    let s = 0;
    let lo = 1;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      const u = r.random();
      s += u;
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
    }
    assert.ok(lo >= 0 && hi < 1);
    assert.ok(Math.abs(s / n - 0.5) < 0.01, `uniform mean ${s / n}`);
    let m = 0;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      m += z;
      v += z * z;
    }
    assert.ok(Math.abs(m / n) < 0.03 && Math.abs(v / n - 1) < 0.04, `normal mean ${m / n}, var ${v / n}`);
    for (const lam of [0.5, 4, 30, 200]) {
      let pm = 0;
      let pv = 0;
      const k = 4000;
      for (let i = 0; i < k; i++) {
        const x = r.poisson(lam);
        assert.ok(Number.isInteger(x) && x >= 0);
        pm += x;
        pv += x * x;
      }
      pm /= k;
      pv = pv / k - pm * pm;
      // mean and variance both equal lambda; 5 standard errors
      assert.ok(Math.abs(pm - lam) < 5 * Math.sqrt(lam / k), `poisson(${lam}) mean ${pm}`);
      assert.ok(Math.abs(pv - lam) < 0.15 * lam + 0.1, `poisson(${lam}) variance ${pv}`);
    }
  });

  test('choice follows the weights', () => {
    const r = new Random('choice');
    let ones = 0;
    for (let i = 0; i < 4000; i++) ones += r.choice(['a', 'b'], [0.25, 0.75]) === 'b' ? 1 : 0;
    assert.ok(Math.abs(ones / 4000 - 0.75) < 0.03);
  });
});

describe('kernels and filtering', () => {
  test('isotropic kernel: sums to 1, exp(-d²/2σ²) ratios, 41x41', () => {
    const s = 2;
    const k = gaussianKernel(41, s, s, 0);
    assert.equal(k.length, 41 * 41);
    assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    const at = (dx: number, dy: number) => k[(20 + dy) * 41 + 20 + dx]!;
    assert.ok(Math.abs(at(1, 0) / at(0, 0) - Math.exp(-1 / (2 * s * s))) < 1e-12);
    assert.ok(Math.abs(at(3, 4) / at(0, 0) - Math.exp(-25 / (2 * s * s))) < 1e-12);
  });

  test('anisotropic kernel: σx along x at rotation 0, swapped by a quarter turn, point symmetric', () => {
    const k0 = gaussianKernel(11, 3, 1, 0);
    const at = (k: Float64Array, dx: number, dy: number) => k[(5 + dy) * 11 + 5 + dx]!;
    assert.ok(Math.abs(at(k0, 2, 0) / at(k0, 0, 0) - Math.exp(-4 / 18)) < 1e-12);
    assert.ok(Math.abs(at(k0, 0, 2) / at(k0, 0, 0) - Math.exp(-4 / 2)) < 1e-12);
    const k90 = gaussianKernel(11, 3, 1, Math.PI / 2);
    for (let dy = -5; dy <= 5; dy++) {
      for (let dx = -5; dx <= 5; dx++) {
        assert.ok(Math.abs(at(k90, dx, dy) - at(k0, dy, dx)) < 1e-12);
        const k30 = gaussianKernel(11, 3, 1, 0.5);
        assert.ok(Math.abs(at(k30, dx, dy) - at(k30, -dx, -dy)) < 1e-15);
      }
    }
  });

  test('reflect101 border indices (gfedcb|abcdefgh|gfedcba)', () => {
    assert.deepEqual([-3, -2, -1, 0, 4, 5, 6, 7].map((i) => reflect101(i, 5)), [3, 2, 1, 0, 4, 3, 2, 1]);
    assert.equal(reflect101(-7, 1), 0);
    assert.equal(reflect101(12, 3), 0); // period 4: 12 -> 0
  });

  test('filter2D: delta kernel is the identity; a hand-computed border value', () => {
    const img = floatImage(3, 2, (x, y, c) => x + 10 * y + 100 * c);
    const delta = new Float64Array(9);
    delta[4] = 1;
    assert.deepEqual(Array.from(filter2D(img, delta, 3).data), Array.from(img.data));
    // [0.25 0.5 0.25] along x: out(0) = 0.25*x(1) + 0.5*x(0) + 0.25*x(1) (reflected) = 1 for x = [0, 1, 2]
    const k = new Float64Array([0, 0, 0, 0.25, 0.5, 0.25, 0, 0, 0]);
    const out = filter2D(img, k, 3);
    assert.deepEqual(row(out), [0.5, 1, 1.5]);
  });
});

describe('resize (OpenCV conventions)', () => {
  test('bilinear 2 -> 4 gives [0, 0.25, 0.75, 1] (half-pixel centres, clamped edges)', () => {
    const img = floatImage(2, 1, (x) => x);
    assert.deepEqual(row(resize(img, 4, 1, 'bilinear')), [0, 0.25, 0.75, 1]);
  });

  test('area: 4 -> 2 averages pairs; 3 -> 2 weighs by overlap', () => {
    assert.deepEqual(row(resize(floatImage(4, 1, (x) => x + 1), 2, 1, 'area')), [1.5, 3.5]);
    const r = row(resize(floatImage(3, 1, (x) => x + 1), 2, 1, 'area'));
    assert.ok(Math.abs(r[0]! - 4 / 3) < 1e-6 && Math.abs(r[1]! - 8 / 3) < 1e-6, String(r));
  });

  test('bicubic keeps constants; Keys weights (a = -0.75) by hand at fraction 0.75', () => {
    const c = resize(floatImage(8, 8, () => 0.3), 13, 5, 'bicubic');
    for (const v of c.data) assert.ok(Math.abs(v - 0.3) < 1e-6);
    // 16 -> 32: output 4 sits at source 4.5 / 2 - 0.5 = 1.75, so taps 0..3 at distances 1.75, 0.75,
    // 0.25, 1.25. Keys: |t| <= 1: (a+2)|t|³ - (a+3)|t|² + 1; 1 < |t| < 2: a|t|³ - 5a|t|² + 8a|t| - 4a.
    const expected = [-0.03515625, 0.26171875, 0.87890625, -0.10546875];
    for (let k = 0; k < 4; k++) {
      const impulse = row(resize(floatImage(16, 1, (x) => (x === k ? 1 : 0)), 32, 1, 'bicubic'));
      assert.ok(Math.abs(impulse[4]! - expected[k]!) < 1e-7, `tap ${k}: ${impulse[4]}`);
    }
  });
});

describe('noise and JPEG', () => {
  test('rounding is half to even, as numpy and OpenCV', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4999, 2.6].map(roundHalfEven), [0, 2, 2, -0, 2, 3]);
  });

  test('Gaussian noise: sigma 0 changes nothing; sigma 10 has standard deviation 10/255', () => {
    const img = floatImage(64, 64, () => 0.5);
    assert.deepEqual(addGaussianNoise(img, 0, new Random('n')).data, img.data);
    const noisy = addGaussianNoise(img, 10, new Random('n'));
    let s2 = 0;
    for (const v of noisy.data) s2 += (v - 0.5) ** 2;
    const sd = Math.sqrt(s2 / noisy.data.length) * 255;
    assert.ok(Math.abs(sd - 10) < 0.3, `sd ${sd}`);
  });

  test('Poisson noise stays in [0, 1] and is zero-mean', () => {
    const img = floatImage(64, 64, (x) => (x * 4) / 255);
    const out = addPoissonNoise(img, 1, new Random('p'));
    let d = 0;
    for (let i = 0; i < out.data.length; i++) {
      assert.ok(out.data[i]! >= 0 && out.data[i]! <= 1);
      d += out.data[i]! - img.data[i]!;
    }
    assert.ok(Math.abs(d / out.data.length) < 0.01);
  });

  test('JPEG round trip: quality 100 is close, quality 60 loses more, deterministic', async () => {
    const img = toFloat(testPicture(48, 40));
    const err = (a: FloatImage) => {
      let s = 0;
      for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i]! - img.data[i]!);
      return (255 * s) / a.data.length;
    };
    const q100 = await jpegRoundTrip(img, 100);
    const q60 = await jpegRoundTrip(img, 60);
    assert.equal(q100.width, 48);
    assert.equal(q100.height, 40);
    assert.ok(err(q100) < err(q60), `${err(q100)} vs ${err(q60)}`);
    assert.ok(err(q60) > 0.5);
    assert.deepEqual((await jpegRoundTrip(img, 60)).data, q60.data);
    await assert.rejects(jpegRoundTrip(img, 0), /quality/);
  });
});

describe('degrade', () => {
  const pic = testPicture(48, 48);

  test('the celeba-test preset is GFPGAN train_gfpgan_v1.yml', () => {
    const p = PRESETS['celeba-test'];
    assert.equal(p.kernelSize, 41);
    assert.deepEqual(p.kernelTypes, ['iso', 'aniso']);
    assert.deepEqual(p.kernelProb, [0.5, 0.5]);
    assert.deepEqual(p.blurSigma, [0.1, 10]);
    assert.deepEqual(p.downsample, [0.8, 8]);
    assert.deepEqual(p.noise?.gaussianSigma, [0, 20]);
    assert.deepEqual(p.jpeg, [60, 100]);
    assert.deepEqual(p.interpolations, ['bilinear']);
    assert.equal(p.resizeBack, 'bilinear');
    for (const name of ['celeba-test', 'mild', 'severe'] as const) checkConfig(PRESETS[name]);
    assert.throws(() => checkConfig({ ...p, blurSigma: [10, 0.1] }), /blurSigma/);
    assert.throws(() => checkConfig({ ...p, kernelSize: 40 }), /kernelSize/);
  });

  test('same key, same bytes; another seed, other bytes', async () => {
    const a = await degrade(pic, PRESETS['celeba-test'], { key: '0:pic' });
    const b = await degrade(pic, PRESETS['celeba-test'], { key: '0:pic' });
    const c = await degrade(pic, PRESETS['celeba-test'], { key: '1:pic' });
    assert.deepEqual(a.image.data, b.image.data);
    assert.deepEqual(a.record, b.record);
    assert.notDeepEqual(a.image.data, c.image.data);
    assert.equal(a.image.width, 48);
    assert.equal(a.image.height, 48);
  });

  test('drawn parameters stay in the preset ranges', async () => {
    const kinds = new Set<string>();
    const small = testPicture(24, 24);
    for (const preset of ['celeba-test', 'mild', 'severe'] as const) {
      const p = PRESETS[preset];
      for (let s = 0; s < 8; s++) {
        const { record: r, image } = await degrade(small, p, { key: `${s}:${preset}` });
        kinds.add(r.blur.kernel);
        assert.ok(r.blur.sigmaX >= p.blurSigma[0] && r.blur.sigmaX <= p.blurSigma[1]);
        assert.ok(r.blur.sigmaY >= p.blurSigma[0] && r.blur.sigmaY <= p.blurSigma[1]);
        if (r.blur.kernel === 'iso') assert.equal(r.blur.sigmaY, r.blur.sigmaX);
        assert.ok(Math.abs(r.blur.rotation) <= Math.PI);
        assert.ok(r.downsample.scale >= p.downsample[0] && r.downsample.scale <= p.downsample[1]);
        assert.equal(r.downsample.width, Math.floor(24 / r.downsample.scale));
        assert.ok(p.interpolations.includes(r.downsample.interpolation));
        assert.ok(r.noise !== null);
        if (r.noise.type === 'gaussian') assert.ok(r.noise.sigma >= p.noise!.gaussianSigma[0] && r.noise.sigma <= p.noise!.gaussianSigma[1]);
        else assert.ok(preset === 'severe' && r.noise.scale >= 0.5 && r.noise.scale <= 2);
        assert.ok(Number.isInteger(r.jpeg!.quality) && r.jpeg!.quality >= p.jpeg![0] && r.jpeg!.quality < p.jpeg![1]);
        assert.deepEqual([image.width, image.height], [24, 24]);
      }
    }
    assert.deepEqual([...kinds].sort(), ['aniso', 'iso']);
  });

  test("resizeBack 'none' keeps the small image; bicubic changes only the last step", async () => {
    const big = testPicture(64, 64);
    const small = await degrade(big, PRESETS.mild, { key: '3:x', resizeBack: 'none' });
    assert.equal(small.record.resizeBack, null);
    assert.deepEqual([small.image.width, small.image.height], [small.record.downsample.width, small.record.downsample.height]);
    const lin = await degrade(big, PRESETS.mild, { key: '3:x' });
    const cub = await degrade(big, PRESETS.mild, { key: '3:x', resizeBack: 'bicubic' });
    assert.deepEqual({ ...lin.record, resizeBack: null }, { ...cub.record, resizeBack: null });
    assert.equal(cub.record.resizeBack?.interpolation, 'bicubic');
  });
});

describe('osdface degrade', () => {
  async function inputs(t: { after(fn: () => void): void }): Promise<string> {
    const dir = tempDir(t, 'osdface-degrade-in-');
    await fs.promises.writeFile(path.join(dir, 'a.png'), await encodeImage(testPicture(40, 40), 'png'));
    await fs.promises.writeFile(path.join(dir, 'b.png'), await encodeImage(testPicture(32, 48), 'png'));
    return dir;
  }
  const quiet = async (fn: () => Promise<number>) => {
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      return await fn();
    } finally {
      process.stderr.write = write;
    }
  };

  test('writes LQ images and the parameter record; same seed, same bytes', async (t) => {
    const inDir = await inputs(t);
    const out1 = tempDir(t, 'osdface-degrade-out-');
    const out2 = tempDir(t, 'osdface-degrade-out-');
    assert.equal(await quiet(() => degradeMain([inDir, '-o', out1, '--seed', '7', '--size', '32', '--gt-out', path.join(out1, 'gt')])), 0);
    assert.equal(await quiet(() => degradeMain([path.join(inDir, 'b.png'), path.join(inDir, 'a.png'), '-o', out2, '--seed', '7', '--size', '32'])), 0);
    for (const n of ['a.png', 'b.png']) assert.deepEqual(fs.readFileSync(path.join(out1, n)), fs.readFileSync(path.join(out2, n)));
    const rec = JSON.parse(fs.readFileSync(path.join(out1, 'degradations.json'), 'utf8'));
    assert.equal(rec.preset, 'celeba-test');
    assert.equal(rec.seed, 7);
    assert.deepEqual(rec.images.map((e: { name: string }) => e.name), ['a', 'b']);
    assert.equal(rec.images[1].record.key, '7:b');
    assert.deepEqual(rec.images[1].gtResize.to, { width: 21, height: 32 });
    const gt = await decodeImage(path.join(out1, 'gt', 'b.png'));
    assert.deepEqual([gt.width, gt.height], [21, 32]);
    const lq = await decodeImage(path.join(out1, 'b.png'));
    assert.deepEqual([lq.width, lq.height], [21, 32]);
    assert.deepEqual(fs.readdirSync(out1).filter((f) => f.includes('.tmp-')), []);
  });

  test('a missing input fails that entry (exit 1); usage errors exit 2', async (t) => {
    const inDir = await inputs(t);
    const out = tempDir(t, 'osdface-degrade-out-');
    assert.equal(await quiet(() => degradeMain([path.join(inDir, 'a.png'), path.join(inDir, 'nope.png'), '-o', out, '--seed', '1'])), 1);
    const rec = JSON.parse(fs.readFileSync(path.join(out, 'degradations.json'), 'utf8'));
    assert.equal(rec.failed, 1);
    assert.match(rec.images.find((e: { name: string }) => e.name === 'nope').error, /does not exist/);
    assert.equal(await quiet(() => degradeMain([inDir, '-o', out])), 2);
    assert.equal(await quiet(() => degradeMain([inDir, '-o', out, '--seed', '1', '--preset', 'extreme'])), 2);
  });
});
