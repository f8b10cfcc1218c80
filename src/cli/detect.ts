#!/usr/bin/env node
/**
 * `osdface detect <file | folder | glob>... [--json] [--detector retinaface|ssd]`: the faces in each image, with box, score and the 5
 * alignment landmarks in image coordinates (after the EXIF orientation is applied).
 *
 * Exit codes: 0 every image was read (faces or not); 1 some image could not be read; 2 usage.
 */
import fs from 'node:fs';
import { ArgumentError as UsageError, parseFlags, reportUsageError } from './args.js';
import { expandInputs } from './inputs.js';
import { fileURLToPath } from 'node:url';
import { decodeImage, ImageError } from '../image/io.js';
import type { DetectedFace } from '../face/detector.js';
import { DEFAULT_DETECTOR, DETECTOR_NAMES, isDetectorName, loadDetector, type DetectorName } from '../face/detectors.js';

export const DETECT_USAGE = `usage: osdface detect <file | folder | glob>... [options]

Finds faces and their 5 alignment landmarks (left eye, right eye, nose tip, left and right mouth
corner; left/right as seen in the image), in pixels of the image as displayed (EXIF orientation
applied). Models (on ONNX Runtime): RetinaFace-mobilenet0.25 with its own 5 landmarks (default),
or face-api's SSD MobileNet V1 detector and 68-point landmark net (--detector ssd).
Inputs as for \`osdface restore\`: files, folders (their image files, not recursive) and *, ?
and [...] patterns, expanded when the shell did not.

options:
  --detector <name>    retinaface (default) or ssd
  --single-scale       retinaface: one pass on the image downscaled to 1024 px (default: images
                       over 1024 px are also searched at full resolution in tiles, for small faces)
  --json               print JSON: [{ file, width, height, faces: [{ box, score, landmarks,
                       eyeDistance }] }] (eyeDistance: what restore --min-eye-distance compares)
                       (an input that cannot be used: { file, error })
  --min-score <s>      detection threshold in (0, 1) (default 0.8 for retinaface, 0.5 for ssd)
  --max-faces <N>      at most N faces per image, best first (default 100)
  --pad <f>            pad the image by f times its longer side before detecting (default 0;
                       0.5 helps for tight face crops)
  --landmarks68        also print all 68 landmarks (--detector ssd only)
  --threads <N>        ONNX Runtime threads (default: all cores)
  -h, --help           this help
`;

interface DetectArgs {
  files: string[];
  json: boolean;
  minScore?: number;
  maxFaces: number;
  pad: number;
  landmarks68: boolean;
  detector: DetectorName;
  singleScale: boolean;
  threads?: number;
}

function parseArgs(argv: string[]): DetectArgs | 'help' {
  const { flags, positionals } = parseFlags(argv, {
    help: { kind: 'bool', short: 'h' }, json: { kind: 'bool' }, landmarks68: { kind: 'bool' }, detector: { kind: 'string' }, 'single-scale': { kind: 'bool' },
    'min-score': { kind: 'number' }, 'max-faces': { kind: 'int' }, pad: { kind: 'number' }, threads: { kind: 'int' },
  });
  if (flags.has('help')) return 'help';
  const get = (flag: string, fallback: number, ok: (n: number) => boolean): number => {
    const v = (flags.get(flag) as number | undefined) ?? fallback;
    if (!ok(v)) throw new UsageError(`--${flag}: invalid value '${v}'`);
    return v;
  };
  const detector = flags.get('detector') ?? DEFAULT_DETECTOR;
  if (!isDetectorName(detector)) throw new UsageError(`--detector must be one of ${DETECTOR_NAMES.join(', ')}, got '${String(detector)}'`);
  if (flags.has('landmarks68') && detector !== 'ssd') throw new UsageError(`--landmarks68 needs --detector ssd (${detector} finds 5 landmarks, not 68)`);
  if (flags.has('single-scale') && detector !== 'retinaface') throw new UsageError('--single-scale applies to --detector retinaface (ssd always runs one 512x512 pass)');
  const a: DetectArgs = {
    files: positionals, json: flags.has('json'), landmarks68: flags.has('landmarks68'), detector, singleScale: flags.has('single-scale'),
    maxFaces: get('max-faces', 100, (n) => n >= 1), pad: get('pad', 0, (n) => n >= 0 && n <= 4),
  };
  if (flags.has('min-score')) a.minScore = get('min-score', 0.5, (n) => n > 0 && n < 1);
  if (flags.has('threads')) a.threads = get('threads', 1, (n) => n >= 1);
  if (a.files.length === 0) throw new UsageError('no image given (files, folders or patterns)');
  return a;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

/** Pixels between the eye landmarks: what `restore --min-eye-distance` compares. */
const eyeDistance = (f: DetectedFace) => Math.hypot(f.landmarks[0][0] - f.landmarks[1][0], f.landmarks[0][1] - f.landmarks[1][1]);

function faceJson(f: DetectedFace, with68: boolean) {
  return {
    box: { x: r2(f.box.x), y: r2(f.box.y), width: r2(f.box.width), height: r2(f.box.height) },
    score: Math.round(f.score * 10000) / 10000,
    landmarks: f.landmarks.map(([x, y]) => [r2(x), r2(y)]),
    eyeDistance: r2(eyeDistance(f)),
    ...(with68 ? { landmarks68: (f.landmarks68 ?? []).map(([x, y]) => [r2(x), r2(y)]) } : {}),
  };
}

/** Runs `osdface detect` with the arguments after `detect`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let args: DetectArgs | 'help';
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return reportUsageError('detect', e.message);
  }
  if (args === 'help') {
    process.stdout.write(DETECT_USAGE);
    return 0;
  }
  let detector;
  try {
    detector = await loadDetector(args.detector, args.threads ? { threads: args.threads } : {});
  } catch (e) {
    process.stderr.write(`osdface detect: cannot load the ${args.detector} face detector: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  let failed = 0;
  const results: unknown[] = [];
  try {
    for (const { input: file, error } of expandInputs(args.files)) {
      if (error !== undefined) {
        failed++;
        process.stderr.write(`osdface detect: ${file}: ${error}\n`);
        if (args.json) results.push({ file, error });
        continue;
      }
      let img;
      try {
        img = await decodeImage(file);
      } catch (e) {
        if (!(e instanceof ImageError)) throw e;
        failed++;
        process.stderr.write(`osdface detect: ${e.message}\n`);
        if (args.json) results.push({ file, error: e.message });
        continue;
      }
      const faces = await detector.detect(img, { ...(args.minScore !== undefined ? { minScore: args.minScore } : {}), maxFaces: args.maxFaces, pad: args.pad, ...(args.singleScale ? { multiScale: false } : {}) });
      if (args.json) {
        results.push({ file, width: img.width, height: img.height, faces: faces.map((f) => faceJson(f, args.landmarks68)) });
      } else {
        process.stdout.write(`${file}: ${img.width}x${img.height}, ${faces.length} face${faces.length === 1 ? '' : 's'}\n`);
        faces.forEach((f, i) => {
          const b = f.box;
          const pts = f.landmarks.map(([x, y]) => `(${x.toFixed(1)}, ${y.toFixed(1)})`).join(' ');
          process.stdout.write(`  ${i}: score ${f.score.toFixed(3)} box ${b.x.toFixed(1)},${b.y.toFixed(1)} ${b.width.toFixed(1)}x${b.height.toFixed(1)} eye distance ${eyeDistance(f).toFixed(1)} px landmarks ${pts}\n`);
        });
      }
    }
  } finally {
    await detector.dispose();
  }
  if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  return failed > 0 ? 1 : 0;
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { process.stderr.write(`osdface detect: ${e instanceof Error ? e.message : String(e)}\n`); process.exitCode = 1; },
  );
}
