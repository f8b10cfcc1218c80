/**
 * RetinaFace-mobilenet0.25: parity with the reference PyTorch code (../shared/fixtures/retinaface),
 * the detection rate on the real degraded crops, multi-scale search for small faces, and choosing
 * the detector (`loadDetector`, `--detector`, restorePhoto's `detector`).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { RetinaFaceDetector, pyramidScales } from '../src/face/retinaface.js';
import { MNET_PRIORS, priorBoxes } from '../src/face/priors.js';
import { DEFAULT_DETECTOR, loadDetector, parseDetectorName } from '../src/face/detectors.js';
import { FFHQ_TEMPLATE_512 } from '../src/face/align.js';
import { restorePhoto } from '../src/photo/restore_photo.js';
import { convertParityA, noFixtures, realLq, repoRoot, shared, tempDir } from './helpers.js';
import { OSDFace } from '../src/osdface.js';

const fixture = path.join(shared, 'fixtures/retinaface');
const whole = path.join(shared, 'data/whole');
const skip = [fixture, realLq, whole].every((d) => fs.existsSync(d)) ? false : `RetinaFace fixture or face images not found under ${shared}`;
const IOD_512 = Math.hypot(FFHQ_TEMPLATE_512[1][0] - FFHQ_TEMPLATE_512[0][0], FFHQ_TEMPLATE_512[1][1] - FFHQ_TEMPLATE_512[0][1]);
const cli = path.join(repoRoot, 'dist/src/cli/main.js');

interface RefFace { box: number[]; score: number; landmarks: [number, number][] }
type RefDetections = Record<string, { file: string; width: number; height: number; faces: RefFace[] }>;

let det: RetinaFaceDetector;
before(async () => {
  if (!skip) det = await RetinaFaceDetector.load({ threads: 1 });
});
after(async () => {
  if (det) await det.dispose();
});

function osdface(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
}

test('parity with the reference: input, priors, raw heads (1e-4 max|ref| + 1e-5) and decoded detections (0.05 px)', { skip }, async () => {
  const io = SafetensorsFile.open(path.join(fixture, 'io.safetensors'));
  const ref = JSON.parse(fs.readFileSync(path.join(fixture, 'detections.json'), 'utf8')) as RefDetections;
  for (const k of [0, 1]) {
    const r = ref[`image${k}`]!;
    const img = await decodeImage(path.join(fixture, r.file));
    const input = RetinaFaceDetector.input(img);
    const refInput = io.read(`image${k}`);
    assert.deepEqual(input.shape, refInput.shape);
    assert.deepEqual(Array.from(input.data), Array.from(refInput.data as Float32Array), `${r.file}: BGR minus the mean`);
    const priors = priorBoxes(MNET_PRIORS, img.height, img.width);
    assert.deepEqual(Array.from(priors), Array.from(io.read(`image${k}.priors`).data as Float32Array), `${r.file}: priors`);
    const heads = await det.heads(refInput as typeof input);
    for (const name of ['loc', 'conf', 'landms'] as const) {
      const want = io.read(`image${k}.${name}`).data as Float32Array;
      const got = heads[name];
      assert.equal(got.length, want.length, `${r.file} ${name}: size`);
      let maxRef = 0;
      let maxErr = 0;
      for (let i = 0; i < want.length; i++) {
        maxRef = Math.max(maxRef, Math.abs(want[i]!));
        maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
      }
      assert.ok(maxErr <= 1e-4 * maxRef + 1e-5, `${r.file} ${name}: max error ${maxErr} > ${1e-4 * maxRef + 1e-5}`);
    }
    const dets = (await det.detectOnce(img)).filter((d) => d.score >= 0.5);
    assert.equal(dets.length, r.faces.length, `${r.file}: number of detections`);
    r.faces.forEach((f, i) => {
      const d = dets[i]!;
      assert.ok(Math.abs(d.score - f.score) < 1e-4, `${r.file} face ${i}: score ${d.score} vs ${f.score}`);
      f.box.forEach((v, j) => assert.ok(Math.abs(d.box[j]! - v) <= 0.05, `${r.file} face ${i} box[${j}]: ${d.box[j]} vs ${v}`));
      f.landmarks.forEach(([x, y], j) => {
        assert.ok(Math.abs(d.landmarks[j]![0] - x) <= 0.05 && Math.abs(d.landmarks[j]![1] - y) <= 0.05, `${r.file} face ${i} landmark ${j}: ${d.landmarks[j]} vs ${x},${y}`);
      });
    });
  }
});

test('osdface detect (default detector) prints the reference detections of a whole photo', { skip }, () => {
  assert.equal(DEFAULT_DETECTOR, 'retinaface');
  const ref = (JSON.parse(fs.readFileSync(path.join(fixture, 'detections.json'), 'utf8')) as RefDetections)['image0']!;
  const r = osdface('detect', path.join(fixture, ref.file), '--json', '--min-score', '0.5', '--threads', '1');
  assert.equal(r.status, 0, r.stderr);
  const [out] = JSON.parse(r.stdout) as { faces: { box: { x: number; y: number; width: number; height: number }; landmarks: [number, number][] }[] }[];
  assert.equal(out!.faces.length, ref.faces.length);
  ref.faces.forEach((f, i) => {
    const b = out!.faces[i]!.box;
    const got = [b.x, b.y, b.x + b.width, b.y + b.height];
    f.box.forEach((v, j) => assert.ok(Math.abs(got[j]! - v) <= 0.05 + 0.01, `face ${i} box[${j}]: ${got[j]} vs ${v}`));
    f.landmarks.forEach(([x, y], j) => assert.ok(Math.hypot(out!.faces[i]!.landmarks[j]![0] - x, out!.faces[i]!.landmarks[j]![1] - y) <= 0.05, `face ${i} landmark ${j}`));
  });
});

test('real-lq: the default detector finds a face in all 46 crops, landmarks near the FFHQ template', { skip }, async () => {
  const files = fs.readdirSync(realLq).sort();
  assert.equal(files.length, 46);
  const missed: string[] = [];
  const errs: number[] = [];
  for (const f of files) {
    const img = await decodeImage(path.join(realLq, f));
    const faces = await det.detect(img);
    if (faces.length === 0) {
      missed.push(f);
      continue;
    }
    if (img.width === 512 && img.height === 512) {
      errs.push(faces[0]!.landmarks.reduce((s, p, i) => s + Math.hypot(p[0] - FFHQ_TEMPLATE_512[i]![0], p[1] - FFHQ_TEMPLATE_512[i]![1]), 0) / 5);
    }
  }
  // measured (bench/RESULTS.md): 46 of 46; median landmark error 10.7 px = 0.085 of the eye distance
  assert.deepEqual(missed, [], 'every crop has its face found');
  errs.sort((a, b) => a - b);
  const medianErr = errs[errs.length >> 1]!;
  assert.ok(medianErr / IOD_512 < 0.1, `median landmark error ${medianErr.toFixed(1)} px`);
  assert.ok(errs[errs.length - 1]! / IOD_512 < 0.5, `worst landmark error ${errs[errs.length - 1]!.toFixed(1)} px: a face, not something else`);
});

test('multi-scale search finds a 30-px face in a 3000x2000 photo that single-scale misses', { skip }, async () => {
  // one real degraded crop shrunk to 64 px (eye distance ~16 px) pasted into a large grey photo
  const side = 64;
  const crop = await sharp(path.join(realLq, 'codeformer_0412.png')).resize(side, side).removeAlpha().raw().toBuffer();
  const W = 3000;
  const H = 2000;
  const data = new Uint8Array(W * H * 3).fill(120);
  const ox = 2101;
  const oy = 1337;
  for (let y = 0; y < side; y++) data.set(crop.subarray(3 * y * side, 3 * (y + 1) * side), 3 * ((oy + y) * W + ox));
  const img: RgbImage = { data, width: W, height: H, channels: 3 };
  assert.deepEqual(pyramidScales(W), [1, 0.5, 0.25, 0.125, 0.0625]);
  const single = await det.detect(img, { multiScale: false });
  assert.equal(single.length, 0, 'one pass at 1024 px sees a 10-px face and misses it');
  const multi = await det.detect(img);
  assert.equal(multi.length, 1, 'the full-resolution tiles find it, and nothing else');
  const k = side / 512;
  const err = multi[0]!.landmarks.reduce((s, p, i) => s + Math.hypot(p[0] - (ox + FFHQ_TEMPLATE_512[i]![0] * k), p[1] - (oy + FFHQ_TEMPLATE_512[i]![1] * k)), 0) / 5;
  assert.ok(err < 0.25 * IOD_512 * k, `landmarks ${err.toFixed(2)} px from where the face was pasted`);
});

test('choosing the detector: loadDetector, restorePhoto detector names, clear errors', { skip }, async () => {
  assert.equal(parseDetectorName('ssd'), 'ssd');
  assert.throws(() => parseDetectorName('yolo'), /unknown face detector 'yolo'; use one of: retinaface, ssd/);
  await assert.rejects(loadDetector('yolo' as 'ssd'), /unknown face detector 'yolo'/);
  await assert.rejects(RetinaFaceDetector.load({ weights: path.join(shared, 'no-such.pth') }), /cannot read the RetinaFace weights .*no-such\.pth/);
  const img = await decodeImage(path.join(whole, 'codeformer_01.jpg'));
  const same = async (crops: RgbImage[]) => crops;
  // SSD takes a hand for a fifth face on this photo; RetinaFace finds the four faces only
  const bySsd = await restorePhoto(img, same, { detector: 'ssd', minEyeDistance: 0 });
  const byRetina = await restorePhoto(img, same, { minEyeDistance: 0 });
  assert.equal(bySsd.faces.length, 5);
  assert.equal(byRetina.faces.length, 4);
  const loaded = await loadDetector('retinaface', { threads: 1 });
  try {
    assert.equal(loaded.name, 'retinaface');
    assert.equal((await restorePhoto(img, same, { detector: loaded })).faces.length, 4);
  } finally {
    await loaded.dispose();
  }
  await assert.rejects(restorePhoto(img, same, { detector: 'bogus' as 'ssd' }), /restorePhoto: detector: unknown face detector 'bogus'/);
});

test('--detector on the command line: ssd and retinaface selectable, unknown names and misuse are usage errors', { skip }, (t) => {
  const photo = path.join(whole, 'codeformer_01.jpg');
  const ssd = osdface('detect', photo, '--detector', 'ssd', '--json', '--landmarks68', '--threads', '1');
  assert.equal(ssd.status, 0, ssd.stderr);
  const [s] = JSON.parse(ssd.stdout) as { faces: { landmarks68?: unknown[] }[] }[];
  assert.equal(s!.faces.length, 5);
  assert.equal(s!.faces[0]!.landmarks68!.length, 68);
  const rf = osdface('detect', photo, '--detector', 'retinaface', '--threads', '1');
  assert.equal(rf.status, 0, rf.stderr);
  assert.match(rf.stdout, /248x189, 4 faces\n/);
  const bad = osdface('detect', photo, '--detector', 'mtcnn');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--detector must be one of retinaface, ssd, got 'mtcnn'/);
  const lm = osdface('detect', photo, '--landmarks68');
  assert.equal(lm.status, 2);
  assert.match(lm.stderr, /--landmarks68 needs --detector ssd/);
  const ss = osdface('detect', photo, '--detector', 'ssd', '--single-scale');
  assert.equal(ss.status, 2);
  assert.match(ss.stderr, /--single-scale applies to --detector retinaface/);
  const out = tempDir(t);
  const restore = osdface('restore', photo, '-o', path.join(out, 'o'), '--model', out, '--detector', 'mtcnn');
  assert.equal(restore.status, 2);
  assert.match(restore.stderr, /--detector must be one of retinaface, ssd, got 'mtcnn'/);
  const aligned = osdface('restore', photo, '-o', path.join(out, 'o'), '--model', out, '--aligned', '--detector', 'ssd');
  assert.equal(aligned.status, 2);
  assert.match(aligned.stderr, /--detector applies to whole photos/);
  assert.match(osdface('restore', '--help').stdout, /--detector retinaface\|ssd/);
});

test("OSDFace.restorePhoto: detector 'ssd' by name, RetinaFace by default; bad names rejected", { skip: skip || noFixtures }, async (t) => {
  const dir = path.join(tempDir(t), 'model');
  await convertParityA(dir);
  const model = await OSDFace.load(dir, { threads: 1 });
  try {
    const file = path.join(whole, 'codeformer_01.jpg');
    const byDefault = await model.restorePhoto(file, { minEyeDistance: 1000 });
    const bySsd = await model.restorePhoto(file, { detector: 'ssd', minEyeDistance: 1000 });
    assert.equal(byDefault.faces.length, 4, 'RetinaFace: the four faces');
    assert.equal(bySsd.faces.length, 5, "face-api's SSD: the four faces and a hand");
    assert.ok(byDefault.faces.every((f) => f.status === 'too-small'), 'nothing restored: only detection differs');
    await assert.rejects(model.restorePhoto(file, { detector: 'bogus' as 'ssd' }), /OSDFace.restorePhoto: detector: unknown face detector 'bogus'; use one of: retinaface, ssd/);
  } finally {
    await model.dispose();
  }
});
