import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { LandmarkDistance, meanPointDistance } from '../src/metrics/lmd.js';
import { evaluatePairs } from '../src/metrics/evaluate.js';
import { resizeLonger } from '../src/cli/degrade.js';
import { shared } from './helpers.js';

const FACE = path.join(shared, 'data/faces-hq/test/ffhq_00003.png');

/** `img` moved right by dx pixels, the left edge replicated. */
function shiftRight(img: RgbImage, dx: number): RgbImage {
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + Math.max(0, x - dx)) * 3;
      data.set(img.data.subarray(s, s + 3), (y * img.width + x) * 3);
    }
  }
  return { ...img, data };
}

test('meanPointDistance by hand: (0,0)-(0,0) and (3,4)-(0,0) average 2.5', () => {
  assert.equal(meanPointDistance([[0, 0], [3, 4]], [[0, 0], [0, 0]]), 2.5);
  assert.throws(() => meanPointDistance([[0, 0]], []), /1 vs 0/);
});

describe('LMD with the shipped 68-point net', () => {
  let lmd: LandmarkDistance;
  let face: RgbImage;
  before(async () => {
    lmd = await LandmarkDistance.load({ threads: 1 });
    const d = await decodeImage(FACE);
    face = resizeLonger({ data: d.data, width: d.width, height: d.height, channels: 3 }, 512).image;
  });
  after(async () => {
    await lmd?.dispose();
  });

  test('identical images: 0; a face moved 8 px: about 8 px', async () => {
    const same = await lmd.measure(face, face);
    assert.equal(same.lmd, 0);
    assert.equal(same.gt.length, 68);
    assert.ok(same.box.width > 150 && same.box.width < 450, JSON.stringify(same.box));
    const moved = await lmd.measure(shiftRight(face, 8), face);
    assert.ok(moved.lmd > 5 && moved.lmd < 11, `lmd ${moved.lmd}`);
    // the points move right, not up or down
    const dx = moved.pred.reduce((s, p, i) => s + p[0] - moved.gt[i]![0], 0) / 68;
    assert.ok(dx > 5, `mean x shift ${dx}`);
  });

  test('no face in the ground truth, or different sizes: errors', async () => {
    const grey: RgbImage = { data: new Uint8Array(256 * 256 * 3).fill(128), width: 256, height: 256, channels: 3 };
    await assert.rejects(lmd.measure(grey, grey), /no face found in the ground truth/);
    await assert.rejects(lmd.measure(grey, face), /sizes differ/);
  });

  test('through evaluatePairs', async () => {
    const r = await evaluatePairs({ pairs: [{ name: 'f', pred: FACE, gt: FACE }], problems: [] }, { metrics: ['lmd'], landmarks: lmd });
    assert.equal(r.images[0]!.values.lmd, 0);
    await assert.rejects(evaluatePairs({ pairs: [], problems: [] }, { metrics: ['lmd'] }), /lmd needs the landmark model/);
  });
});
