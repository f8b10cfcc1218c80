/**
 * `npx tsc -p . && node dist/bench/detectors.js [--data ../shared/data] [--threads 1] [--seeds 0,1,2,3,4]`:
 * the face-detector comparison behind bench/RESULTS.md ("Face detection: RetinaFace vs SSD").
 *
 * Candidates: RetinaFace-mobilenet0.25 (multi-scale, the default) at pad 0 and 0.5; face-api's SSD
 * MobileNet V1 + 68-point net at pad 0 and 0.5; and RetinaFace falling back to SSD (pad 0.5) when
 * it finds nothing (real-lq and synthetic only). RetinaFace runs with a 0.3 threshold so its
 * score threshold can be swept afterwards (its NMS comes before the threshold, so that is exact).
 *
 * - real-lq/ (46 aligned real degraded crops): detection rate at each threshold, and the mean
 *   distance of the best face's 5 landmarks to the FFHQ template (the 45 512x512 crops; px at
 *   512 and / the template's 125.9 px eye distance).
 * - whole/ (10 photos): faces found and false positives against faces marked by eye (WHOLE_FACES:
 *   a detection is a hit when the face's marked nose point lies in its box), time per photo.
 * - faces-hq/test (10 FFHQ faces) degraded by `osdface degrade --preset celeba-test --size 512`
 *   at each seed: detection rate by downsampling factor and by blur sigma.
 * - a group photo made here (never saved): the whole/ photos scaled so their faces are 20-40 px
 *   wide, placed on a 4000x3000 grey canvas; single- vs multi-scale RetinaFace and SSD: faces
 *   found, false positives, time. Then a plain 4000x3000 photo (gfpgan_Blake_Lively stretched).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { FFHQ_TEMPLATE_512 } from '../src/face/align.js';
import { FaceDetector, type DetectedFace, type DetectOptions } from '../src/face/detector.js';
import { RetinaFaceDetector } from '../src/face/retinaface.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

/**
 * Faces marked by eye in ../shared/data/whole: [nose x, nose y] per face (frontal or
 * three-quarter faces a person would restore; 24 in all, as src/face/bench.ts counts them).
 */
export const WHOLE_FACES: Record<string, [number, number][]> = {
  'codeformer_00.jpg': [[301.7, 109.5], [193.8, 108.0], [82.2, 110.0], [412.1, 98.7]],
  'codeformer_01.jpg': [[124.1, 49.6], [117.5, 148.7], [54.3, 81.2], [188.8, 101.9]],
  'codeformer_02.png': [[931.3, 197.9], [233.2, 137.2], [698.8, 185.7], [483.0, 189.2]],
  'codeformer_03.jpg': [[167.9, 122.5]],
  'codeformer_04.jpg': [[120.3, 93.0]],
  'codeformer_05.jpg': [[107.4, 85.5]],
  'codeformer_06.png': [[472.0, 268.9], [226.9, 310.1]],
  'gfpgan_00.jpg': [[598.6, 885.6], [852.1, 494.4]],
  'gfpgan_10045.png': [[416.7, 183.8], [411.8, 485.1], [219.8, 168.1]],
  'gfpgan_Blake_Lively.jpg': [[496.7, 209.4], [163.9, 231.9]],
};

type Detect = (img: RgbImage) => Promise<DetectedFace[]>;

const IOD = Math.hypot(FFHQ_TEMPLATE_512[1][0] - FFHQ_TEMPLATE_512[0][0], FFHQ_TEMPLATE_512[1][1] - FFHQ_TEMPLATE_512[0][1]);
const THRESHOLDS = [0.5, 0.7, 0.8, 0.9, 0.95];
const f1 = (v: number) => v.toFixed(1);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

function landmarkError(f: DetectedFace, size: number): number {
  const k = size / 512;
  return f.landmarks.reduce((s, p, i) => s + Math.hypot(p[0] - FFHQ_TEMPLATE_512[i]![0] * k, p[1] - FFHQ_TEMPLATE_512[i]![1] * k), 0) / 5 / k;
}

/** Hits (marked noses inside a detection box, each face once) and false positives. */
function score(faces: DetectedFace[], truth: [number, number][]): { hits: number; fp: number; fpScores: number[] } {
  const used = new Set<number>();
  const fpScores: number[] = [];
  for (const f of faces) {
    const j = truth.findIndex(([x, y], k) => !used.has(k) && x >= f.box.x && x <= f.box.x + f.box.width && y >= f.box.y && y <= f.box.y + f.box.height);
    if (j >= 0) used.add(j);
    else fpScores.push(f.score);
  }
  return { hits: used.size, fp: fpScores.length, fpScores };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function main(): Promise<void> {
  const data = path.resolve(arg('data', path.join(repo, '../shared/data')));
  const threads = Number(arg('threads', '1'));
  const seeds = arg('seeds', '0,1,2,3,4').split(',').map(Number);
  const out: string[] = [];
  const log = (s: string) => { out.push(s); console.log(s); };
  const [retina, loadR] = await timed(() => RetinaFaceDetector.load({ threads }));
  const [ssd, loadS] = await timed(() => FaceDetector.load({ threads }));
  log(`load: retinaface ${loadR.toFixed(0)} ms, ssd ${loadS.toFixed(0)} ms (threads ${threads})`);
  const rOpts = (o: DetectOptions = {}): DetectOptions => ({ minScore: 0.3, ...o });
  const cands: Record<string, Detect> = {
    'retinaface': (img) => retina.detect(img, rOpts()),
    'retinaface pad 0.5': (img) => retina.detect(img, rOpts({ pad: 0.5 })),
    'ssd': (img) => ssd.detect(img),
    'ssd pad 0.5': (img) => ssd.detect(img, { pad: 0.5 }),
  };
  const thresholded = (name: string, faces: DetectedFace[], thr: number) => (name.startsWith('retinaface') ? faces.filter((f) => f.score > thr) : faces);
  const thrList = (name: string) => (name.startsWith('retinaface') ? THRESHOLDS : [0.5]);

  // --- real-lq
  log('\n## real-lq (46 crops)');
  const lqDir = path.join(data, 'real-lq');
  const lqFiles = fs.readdirSync(lqDir).sort();
  const lqImgs = await Promise.all(lqFiles.map((f) => decodeImage(path.join(lqDir, f))));
  const lqFound: Record<string, DetectedFace[][]> = {};
  for (const [name, det] of Object.entries(cands)) {
    const res: DetectedFace[][] = [];
    for (const img of lqImgs) res.push(await det(img));
    lqFound[name] = res;
    for (const thr of thrList(name)) {
      const faces = res.map((r) => thresholded(name, r, thr));
      const errs = faces.flatMap((fs_, i) => (fs_.length > 0 && lqImgs[i]!.width === 512 && lqImgs[i]!.height === 512 ? [landmarkError(fs_[0]!, 512)] : []));
      const found = faces.filter((x) => x.length > 0).length;
      const missed = lqFiles.filter((_, i) => faces[i]!.length === 0);
      log(`| ${name}${name.startsWith('retinaface') ? ` > ${thr}` : ''} | ${found}/${lqFiles.length} | ${f1(median(errs))} (${(median(errs) / IOD).toFixed(3)}) | ${f1(errs.reduce((a, b) => a + b, 0) / errs.length)} | missed: ${missed.join(', ') || '-'} |`);
    }
  }
  for (const thr of THRESHOLDS) {
    const faces = lqFound['retinaface']!.map((r, i) => {
      const rf = r.filter((f) => f.score > thr);
      return rf.length > 0 ? rf : lqFound['ssd pad 0.5']![i]!;
    });
    const errs = faces.flatMap((fs_, i) => (fs_.length > 0 && lqImgs[i]!.width === 512 ? [landmarkError(fs_[0]!, 512)] : []));
    log(`| retinaface > ${thr}, else ssd pad 0.5 | ${faces.filter((x) => x.length > 0).length}/${lqFiles.length} | ${f1(median(errs))} | |`);
  }
  const topScores = lqFound['retinaface']!.map((r) => r[0]?.score ?? 0).sort((a, b) => a - b);
  log(`retinaface best-face scores on real-lq, lowest 8: ${topScores.slice(0, 8).map((s) => s.toFixed(3)).join(' ')}`);

  // --- whole photos
  log('\n## whole (10 photos, 24 faces marked by eye)');
  const wholeDir = path.join(data, 'whole');
  for (const [name, det] of Object.entries(cands)) {
    if (name.includes('pad')) continue;
    await det(await decodeImage(path.join(wholeDir, 'codeformer_04.jpg'))); // warm-up
    const per: { file: string; faces: DetectedFace[]; ms: number }[] = [];
    for (const file of Object.keys(WHOLE_FACES)) {
      const img = await decodeImage(path.join(wholeDir, file));
      const [faces, ms] = await timed(() => det(img));
      per.push({ file, faces, ms });
    }
    for (const thr of thrList(name)) {
      let hits = 0;
      let fp = 0;
      const notes: string[] = [];
      for (const { file, faces } of per) {
        const s = score(thresholded(name, faces, thr), WHOLE_FACES[file]!);
        hits += s.hits;
        fp += s.fp;
        if (s.hits < WHOLE_FACES[file]!.length) notes.push(`${file} missed ${WHOLE_FACES[file]!.length - s.hits}`);
        if (s.fp > 0) notes.push(`${file} FP ${s.fpScores.map((x) => x.toFixed(2)).join('/')}`);
      }
      const ms = per.map((p) => p.ms);
      log(`| ${name}${name.startsWith('retinaface') ? ` > ${thr}` : ''} | ${hits}/24 | ${fp} | ${notes.join('; ') || '-'} | ${Math.min(...ms).toFixed(0)}-${Math.max(...ms).toFixed(0)} ms (median ${median(ms).toFixed(0)}) |`);
    }
  }

  // --- synthetic degradations of faces-hq/test
  log('\n## faces-hq/test degraded (celeba-test, --size 512)');
  const cache = path.join(repo, 'bench/.cache/detectors');
  type Rec = { downsample: { scale: number }; blur: { sigmaX: number; sigmaY: number } };
  const synth: { img: RgbImage; scale: number; sigma: number }[] = [];
  for (const seed of seeds) {
    const dir = path.join(cache, `degraded-${seed}`);
    if (!fs.existsSync(path.join(dir, 'degradations.json'))) {
      const r = spawnSync(process.execPath, [path.join(repo, 'dist/src/cli/main.js'), 'degrade', path.join(data, 'faces-hq/test'), '-o', dir, '--seed', String(seed), '--size', '512'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`osdface degrade failed: ${r.stderr}`);
    }
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'degradations.json'), 'utf8')) as { images: { name: string; output?: string; record?: Rec }[] };
    for (const e of report.images) {
      if (!e.output || !e.record) throw new Error(`osdface degrade did not degrade ${e.name}`);
      synth.push({ img: await decodeImage(e.output), scale: e.record.downsample.scale, sigma: Math.max(e.record.blur.sigmaX, e.record.blur.sigmaY) });
    }
  }
  const bins: [string, (s: { scale: number; sigma: number }) => boolean][] = [
    ['downsample < 2', (s) => s.scale < 2], ['downsample 2-4', (s) => s.scale >= 2 && s.scale < 4], ['downsample 4-6', (s) => s.scale >= 4 && s.scale < 6], ['downsample >= 6', (s) => s.scale >= 6],
    ['blur sigma < 3', (s) => s.sigma < 3], ['blur sigma 3-6', (s) => s.sigma >= 3 && s.sigma < 6], ['blur sigma >= 6', (s) => s.sigma >= 6],
  ];
  log(`${synth.length} images (seeds ${seeds.join(',')}); counts per bin: ${bins.map(([b, ok]) => `${b}: ${synth.filter(ok).length}`).join(', ')}`);
  const synthFound: Record<string, boolean[]> = {};
  for (const [name, det] of Object.entries(cands)) {
    const res: DetectedFace[][] = [];
    for (const s of synth) res.push(await det(s.img));
    for (const thr of name.startsWith('retinaface') ? [0.5, 0.8, 0.9] : [0.5]) {
      const hit = res.map((r) => thresholded(name, r, thr).some((f) => landmarkError(f, 512) < 0.5 * IOD));
      synthFound[`${name}${name.startsWith('retinaface') ? ` > ${thr}` : ''}`] = hit;
    }
  }
  synthFound['retinaface > 0.8, else ssd pad 0.5'] = synthFound['retinaface > 0.8']!.map((h, i) => h || synthFound['ssd pad 0.5']![i]!);
  for (const [name, hit] of Object.entries(synthFound)) {
    const cells = bins.map(([, ok]) => {
      const idx = synth.map((s, i) => (ok(s) ? i : -1)).filter((i) => i >= 0);
      return `${idx.filter((i) => hit[i]).length}/${idx.length}`;
    });
    log(`| ${name} | ${hit.filter(Boolean).length}/${hit.length} | ${cells.join(' | ')} |`);
  }

  // --- small faces: a group photo built here
  log('\n## group photo 4000x3000, faces 20-40 px (built at run time)');
  const W = 4000;
  const H = 3000;
  const canvas = new Uint8Array(W * H * 3).fill(128);
  const truth: [number, number][] = [];
  const cellW = 1000;
  const cellH = 1000;
  let cell = 0;
  const targets = [20, 25, 30, 35, 40];
  for (const [file, noses] of Object.entries(WHOLE_FACES)) {
    const src = await decodeImage(path.join(wholeDir, file));
    const widths = (await retina.detect(src)).filter((f) => f.score > 0.9).map((f) => f.box.width);
    const s = targets[cell % targets.length]! / median(widths);
    const w = Math.max(1, Math.round(src.width * s));
    const h = Math.max(1, Math.round(src.height * s));
    const small = await sharp(Buffer.from(src.data), { raw: { width: src.width, height: src.height, channels: 3 } }).resize(w, h, { fit: 'fill' }).raw().toBuffer();
    const ox = (cell % 4) * cellW + Math.floor((cellW - w) / 2);
    const oy = Math.floor(cell / 4) * cellH + Math.floor((cellH - h) / 2);
    for (let y = 0; y < h; y++) canvas.set(small.subarray(3 * y * w, 3 * (y + 1) * w), 3 * ((oy + y) * W + ox));
    for (const [x, y] of noses) truth.push([ox + x * (w / src.width), oy + y * (h / src.height)]);
    cell++;
  }
  const group: RgbImage = { data: canvas, width: W, height: H, channels: 3 };
  const groupCands: Record<string, Detect> = {
    'retinaface multi-scale (default)': (img) => retina.detect(img, rOpts()),
    'retinaface single-scale (1024 px)': (img) => retina.detect(img, rOpts({ multiScale: false })),
    'ssd': (img) => ssd.detect(img),
  };
  for (const [name, det] of Object.entries(groupCands)) {
    const [faces, ms] = await timed(() => det(group));
    for (const thr of name.startsWith('retinaface') ? [0.5, 0.8] : [0.5]) {
      const s = score(thresholded(name, faces, thr), truth);
      log(`| ${name} > ${thr} | ${s.hits}/${truth.length} | ${s.fp} (${s.fpScores.map((x) => x.toFixed(2)).join(' ')}) | ${(ms / 1000).toFixed(2)} s |`);
    }
  }
  const blake = await decodeImage(path.join(wholeDir, 'gfpgan_Blake_Lively.jpg'));
  const bigData = await sharp(Buffer.from(blake.data), { raw: { width: blake.width, height: blake.height, channels: 3 } }).resize(W, H, { fit: 'fill' }).raw().toBuffer();
  const big: RgbImage = { data: new Uint8Array(bigData), width: W, height: H, channels: 3 };
  for (const [name, det] of Object.entries(groupCands)) {
    const [faces, ms] = await timed(() => det(big));
    const s = score(faces, WHOLE_FACES['gfpgan_Blake_Lively.jpg']!.map(([x, y]) => [x * (W / blake.width), y * (H / blake.height)] as [number, number]));
    log(`| plain 4000x3000 (Blake Lively stretched): ${name} | ${s.hits}/2, scores ${faces.map((f) => f.score.toFixed(2)).join(' ')} (false positives: ${s.fpScores.map((x) => x.toFixed(2)).join(' ') || '-'}) | ${(ms / 1000).toFixed(2)} s |`);
  }
  await Promise.all([retina.dispose(), ssd.dispose()]);
  const file = path.join(os.tmpdir(), 'osdface-detectors-bench.txt');
  fs.writeFileSync(file, `${out.join('\n')}\n`);
  console.log(`\n(written to ${file})`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
