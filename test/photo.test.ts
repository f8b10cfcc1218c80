/**
 * Whole-photo restoration (restorePhoto): paste-back leaves everything outside the face masks
 * untouched, several faces, faces too small, no face, only-center / max-faces, alpha, upscaling,
 * faces cut by the image border. The restorer is a stub that inverts colours, so changes show.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { FaceDetector, type Landmarks5 } from '../src/face/detector.js';
import { applyAffine, FFHQ_TEMPLATE_512 } from '../src/face/align.js';
import { pasteFace, restorePhoto, type PhotoImage, type RestoreCrops } from '../src/photo/restore_photo.js';
import { shared } from './helpers.js';

const whole = path.join(shared, 'data/whole');
const skip = fs.existsSync(whole) ? false : `photos not found at ${whole}`;

let detector: FaceDetector;
before(async () => {
  if (!skip) detector = await FaceDetector.load({ threads: 1 });
});
after(async () => {
  if (detector) await detector.dispose();
});

/** A restorer stub: inverts every crop; records what it was given. */
function inverter(calls: RgbImage[][] = []): RestoreCrops {
  return async (crops) => {
    calls.push(crops);
    return crops.map((c) => ({ ...c, data: c.data.map((v) => 255 - v) }));
  };
}

function gradient(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([(x * 255) / (w - 1), (y * 255) / (h - 1), 128], 3 * (y * w + x));
  return { data, width: w, height: h, channels: 3 };
}

test('pixels outside every face mask are unchanged (upscale 1), faces inside are replaced', { skip }, async () => {
  const img = await decodeImage(path.join(whole, 'codeformer_06.png'));
  const calls: RgbImage[][] = [];
  const res = await restorePhoto(img, inverter(calls), { detector, minEyeDistance: 24 });
  assert.equal(res.faces.length, 2);
  assert.ok(res.faces.every((f) => f.status === 'restored'));
  assert.equal(calls.length, 1, 'one restorer call for all faces');
  assert.equal(calls[0]!.length, 2);
  assert.ok(calls[0]!.every((c) => c.width === 512 && c.height === 512));
  assert.equal(res.image.width, img.width);
  assert.equal(res.image.height, img.height);
  let outside = 0;
  let centreChanged = 0;
  let centre = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const crops = res.faces.map((f) => applyAffine(f.matrix, [x, y]));
      const inAny = crops.some(([u, v]) => u > -1 && v > -1 && u < 512 && v < 512);
      const o = 3 * (y * img.width + x);
      if (!inAny) {
        outside++;
        for (let k = 0; k < 3; k++) assert.equal(res.image.data[o + k], img.data[o + k], `pixel ${x},${y} outside the faces changed`);
      }
      // the eye-to-mouth area of the last-pasted face must be the stub's output (inverted)
      const [u, v] = crops[crops.length - 1]!;
      if (u > 190 && u < 320 && v > 230 && v < 380) {
        centre++;
        const diff = Math.abs(res.image.data[o]! + img.data[o]! - 255);
        if (diff <= 40) centreChanged++;
      }
    }
  }
  assert.ok(outside > img.width * img.height * 0.3, `${outside} pixels outside the faces`);
  assert.ok(centre > 1000 && centreChanged / centre > 0.95, `${centreChanged}/${centre} face-centre pixels inverted`);
  assert.deepEqual(res.notices, []);
});

test('a photo with no face comes back unchanged, or only upscaled, with a notice', { skip }, async () => {
  const img = gradient(200, 150);
  let called = false;
  const stub: RestoreCrops = async (c) => {
    called = true;
    return c;
  };
  const res = await restorePhoto(img, stub, { detector });
  assert.equal(called, false);
  assert.deepEqual(res.faces, []);
  assert.deepEqual(res.image.data, img.data);
  assert.equal(res.notices.length, 1);
  assert.match(res.notices[0]!, /no face found/);
  const up = await restorePhoto({ ...img, alpha: new Uint8Array(200 * 150).fill(200) }, stub, { detector, upscale: 2 });
  assert.equal(up.image.width, 400);
  assert.equal(up.image.height, 300);
  assert.equal(up.image.alpha?.length, 400 * 300);
  assert.ok(up.image.alpha!.every((a) => a === 200), 'a constant alpha stays constant');
  assert.match(up.notices[0]!, /no face found.*upscaled x2/);
});

test('a multi-face photo gives as many restored faces as detected; max-faces and only-center pick among them', { skip }, async () => {
  const img = await decodeImage(path.join(whole, 'codeformer_00.jpg'));
  const detected = await detector.detect(img);
  assert.equal(detected.length, 4);
  const calls: RgbImage[][] = [];
  const res = await restorePhoto(img, inverter(calls), { detector, minEyeDistance: 8, saveFaces: true });
  assert.equal(res.faces.length, detected.length);
  assert.equal(res.faces.filter((f) => f.status === 'restored').length, detected.length);
  assert.equal(calls[0]!.length, detected.length);
  for (const f of res.faces) {
    assert.ok(f.crop && f.restoredCrop, 'saveFaces keeps both crops');
    assert.equal(f.crop.width, 512);
  }

  const two = await restorePhoto(img, inverter(), { detector, minEyeDistance: 8, maxFaces: 2 });
  const kept = two.faces.filter((f) => f.status === 'restored');
  assert.equal(kept.length, 2);
  const skipped = two.faces.filter((f) => f.status === 'over-max-faces');
  assert.equal(skipped.length, 2);
  assert.ok(Math.min(...kept.map((f) => f.eyeDistance)) >= Math.max(...skipped.map((f) => f.eyeDistance)), 'the largest faces are kept');
  assert.ok(two.notices.some((n) => /over the limit of 2 \(--max-faces \/ maxFaces\)/.test(n)));

  const centre = await restorePhoto(img, inverter(), { detector, minEyeDistance: 8, onlyCenterFace: true });
  const c = centre.faces.filter((f) => f.status === 'restored');
  assert.equal(c.length, 1);
  const cx = (f: (typeof centre.faces)[number]) => f.box!.x + f.box!.width / 2;
  const d = (f: (typeof centre.faces)[number]) => Math.abs(cx(f) - img.width / 2);
  assert.ok(centre.faces.every((f) => d(c[0]!) <= d(f)));
});

test('faces below the minimum eye distance are left as they are and reported', { skip }, async () => {
  const img = await decodeImage(path.join(whole, 'codeformer_01.jpg'));
  const calls: RgbImage[][] = [];
  const res = await restorePhoto(img, inverter(calls), { detector, minEyeDistance: 24 });
  assert.ok(res.faces.length >= 4);
  assert.ok(res.faces.every((f) => f.status === 'too-small' && f.eyeDistance < 24));
  assert.equal(calls.length, 0, 'the restorer is not called for nothing');
  assert.deepEqual(res.image.data, img.data);
  assert.equal(res.notices.length, res.faces.length);
  assert.match(res.notices[0]!, /eye distance .* < 24 px \(--min-eye-distance \/ minEyeDistance sets the limit\)/);
  // with a lower bound they are restored
  const low = await restorePhoto(img, inverter(), { detector, minEyeDistance: 15 });
  assert.ok(low.faces.filter((f) => f.status === 'restored').length >= 4);
});

test('upscale 2: output doubled, alpha upscaled with it; a restorer returning another size still pastes', { skip }, async () => {
  const src = await decodeImage(path.join(whole, 'codeformer_04.jpg'));
  const alpha = new Uint8Array(src.width * src.height);
  for (let i = 0; i < alpha.length; i++) alpha[i] = i % src.width < src.width / 2 ? 255 : 64;
  const img: PhotoImage = { ...src, alpha };
  // a restorer that returns 256x256 grey crops
  const half: RestoreCrops = async (crops) => crops.map(() => ({ data: new Uint8Array(256 * 256 * 3).fill(10), width: 256, height: 256, channels: 3 as const }));
  const res = await restorePhoto(img, half, { detector, upscale: 2, minEyeDistance: 10 });
  assert.equal(res.image.width, 2 * src.width);
  assert.equal(res.image.alpha!.length, 4 * src.width * src.height);
  assert.equal(res.image.alpha![0], 255);
  assert.equal(res.image.alpha![2 * src.width - 1], 64);
  const f = res.faces[0]!;
  assert.equal(f.status, 'restored');
  // the face centre (nose) in output pixels is the restorer's grey
  const [nx, ny] = f.landmarks[2];
  const o = 3 * (Math.round(2 * ny) * res.image.width + Math.round(2 * nx));
  assert.ok(res.image.data[o]! < 20, `nose pixel ${res.image.data[o]}`);
});

test('a face cut by the image border is pasted up to the border', async () => {
  // synthetic: landmarks of a 200-px face whose left third lies outside a 300x300 image
  const img = gradient(300, 300);
  const lm = FFHQ_TEMPLATE_512.map(([x, y]) => [x * 0.5 - 80, y * 0.5 + 20]) as Landmarks5;
  const calls: RgbImage[][] = [];
  const res = await restorePhoto(img, inverter(calls), { faces: [{ landmarks: lm }], minEyeDistance: 24 });
  assert.equal(res.faces[0]!.status, 'restored');
  // the crop holds border fill where the image ends
  const crop = calls[0]![0]!;
  assert.deepEqual([...crop.data.subarray(3 * (256 * 512 + 5), 3 * (256 * 512 + 5) + 3)], [135, 133, 132]);
  // at the image's left edge, level with the eyes, the pasted face reaches the border
  const y = Math.round(lm[0][1]);
  const o = 3 * (y * 300);
  assert.equal(res.image.data[o], 255 - img.data[o]!);
  // far right of the image: untouched
  const r = 3 * (y * 300 + 299);
  assert.deepEqual([...res.image.data.subarray(r, r + 3)], [...img.data.subarray(r, r + 3)]);
});

test('pasteFace: the soft mask is 0 at the crop edge, 1 inside, and blends in between', () => {
  const target = gradient(100, 100);
  const orig = Uint8Array.from(target.data);
  const face: RgbImage = { data: new Uint8Array(64 * 64 * 3).fill(0), width: 64, height: 64, channels: 3 };
  // crop placed at (18, 18), scale 1
  const changed = pasteFace(target, face, [1, 0, 18, 0, 1, 18]);
  assert.ok(changed > 0 && changed < 64 * 64);
  const at = (x: number, y: number) => target.data[3 * (y * 100 + x)]!;
  const was = (x: number, y: number) => orig[3 * (y * 100 + x)]!;
  assert.equal(at(18, 50), was(18, 50), 'crop edge untouched');
  assert.equal(at(10, 50), was(10, 50), 'outside untouched');
  assert.equal(at(50, 50), 0, 'centre fully replaced');
  const mid = at(22, 50);
  assert.ok(mid <= was(22, 50), 'blend zone moves toward the face');
});
