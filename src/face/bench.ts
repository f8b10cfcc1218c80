/**
 * The face-detection evaluation behind bench/RESULTS.md ("Face detection"):
 *
 *   node dist/src/face/bench.js [--data ../shared/data] [--threads 1]
 *
 * - whole/: faces found per photo against counts made by eye (below); detections beyond the
 *   count are false positives (the one seen, on codeformer_01, is a hand).
 * - real-lq/ (512x512 crops already aligned to the FFHQ template): recall, and the distance of
 *   the 5 landmarks to the template (mean over the 5 points, px at 512 and / the template's
 *   125.9 px eye distance), with the crop padded by 0, 0.25, 0.5 of its side.
 * - time per photo (detector + landmarks, after a warm-up), one thread.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage } from '../image/io.js';
import { FaceDetector } from './detector.js';
import { FFHQ_TEMPLATE_512 } from './align.js';

/** Faces counted by eye in ../shared/data/whole (frontal or three-quarter faces a person would restore). */
export const WHOLE_FACE_COUNTS: Record<string, number> = {
  'codeformer_00.jpg': 4,
  'codeformer_01.jpg': 4,
  'codeformer_02.png': 4,
  'codeformer_03.jpg': 1, // the head on the right is seen from behind
  'codeformer_04.jpg': 1,
  'codeformer_05.jpg': 1,
  'codeformer_06.png': 2,
  'gfpgan_00.jpg': 2,
  'gfpgan_10045.png': 3,
  'gfpgan_Blake_Lively.jpg': 2,
};

const IOD = Math.hypot(FFHQ_TEMPLATE_512[1][0] - FFHQ_TEMPLATE_512[0][0], FFHQ_TEMPLATE_512[1][1] - FFHQ_TEMPLATE_512[0][1]);

function stats(xs: number[]): { mean: number; median: number; p90: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return {
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    median: s[Math.floor(s.length / 2)]!,
    p90: s[Math.min(s.length - 1, Math.floor(s.length * 0.9))]!,
    max: s[s.length - 1]!,
  };
}

export async function runFaceBench(dataDir: string, threads = 1): Promise<string> {
  const lines: string[] = [];
  const t0 = performance.now();
  const det = await FaceDetector.load({ threads });
  lines.push(`load (build ONNX from the weight files + sessions): ${(performance.now() - t0).toFixed(0)} ms`);
  const wholeDir = path.join(dataDir, 'whole');
  let truth = 0, found = 0, fp = 0;
  const times: number[] = [];
  await det.detect(await decodeImage(path.join(wholeDir, 'codeformer_04.jpg'))); // warm-up
  for (const [file, count] of Object.entries(WHOLE_FACE_COUNTS)) {
    const img = await decodeImage(path.join(wholeDir, file));
    const t = performance.now();
    const faces = await det.detect(img);
    times.push(performance.now() - t);
    truth += count;
    found += Math.min(count, faces.length);
    fp += Math.max(0, faces.length - count);
    lines.push(`  ${file} ${img.width}x${img.height}: ${faces.length} found / ${count}; scores ${faces.map((f) => f.score.toFixed(2)).join(' ')}`);
  }
  const ts = stats(times);
  lines.push(`whole: recall ${found}/${truth}, false positives ${fp}, ms/photo mean ${ts.mean.toFixed(0)} max ${ts.max.toFixed(0)}`);
  const lqDir = path.join(dataDir, 'real-lq');
  const files = fs.readdirSync(lqDir).sort();
  for (const pad of [0, 0.25, 0.5]) {
    const errs: number[] = [];
    let n = 0;
    const t = performance.now();
    for (const f of files) {
      const img = await decodeImage(path.join(lqDir, f));
      if (img.width !== 512 || img.height !== 512) continue; // not a 512 FFHQ crop
      n++;
      const faces = await det.detect(img, { pad });
      if (faces.length === 0) continue;
      const lm = faces[0]!.landmarks;
      errs.push(lm.reduce((s, p, i) => s + Math.hypot(p[0] - FFHQ_TEMPLATE_512[i]![0], p[1] - FFHQ_TEMPLATE_512[i]![1]), 0) / 5);
    }
    const s = stats(errs);
    lines.push(`real-lq pad ${pad}: recall ${errs.length}/${n}; landmark error px mean ${s.mean.toFixed(2)} median ${s.median.toFixed(2)} p90 ${s.p90.toFixed(2)} max ${s.max.toFixed(2)}; /IOD mean ${(s.mean / IOD).toFixed(3)} median ${(s.median / IOD).toFixed(3)}; ms/crop ${((performance.now() - t) / n).toFixed(0)}`);
  }
  await det.dispose();
  return lines.join('\n');
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))) {
  const args = process.argv.slice(2);
  const get = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const here = path.dirname(fileURLToPath(import.meta.url));
  const data = get('--data') ?? path.resolve(here, '../../../../shared/data');
  runFaceBench(data, Number(get('--threads') ?? 1)).then((s) => console.log(s), (e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
