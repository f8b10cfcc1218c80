/**
 * `npm run bench:video -- [--model DIR] [--threads 2] [--frames 48] [--fps 24] [--photo FILE]
 *   [--noise 10] [--jpeg-q 15] [--tune] [--rss-frames 16 | --no-rss] [--keep DIR] [--out FILE]`
 *
 * Steadiness of restored video. Makes its own clip with ffmpeg: a photo from ../shared/data/whole
 * (default codeformer_03.jpg, one face) slowly panned and zoomed (zoompan on the photo upscaled 8x,
 * so the camera moves in 1/8-pixel steps), temporal noise on every frame (ffmpeg's noise filter,
 * strength --noise), every frame JPEG-compressed (an MJPEG pass at -q:v --jpeg-q), then H.264 with
 * a sine audio track. Restores it twice
 * with the model (default: the packaged osdface-small), on --threads ONNX threads: per-frame
 * alignment (--no-smooth) and tracked + smoothed (the default), and prints for each:
 *
 * - landmark jitter: the frame-to-frame noise of the 5 landmarks used for alignment with the
 *   smooth motion taken out (src/video/jitter.ts: RMS second difference / sqrt 6), in pixels and
 *   in % of the eye distance;
 * - deviation: RMS distance of those landmarks from the camera's smooth motion (a cubic in time
 *   fitted to the per-frame detections), which also shows any lag of the filter;
 * - face jitter: the mean frame-to-frame change (0-255) of the centre of the output's face, cut
 *   out along that smooth motion (128 px crops): flicker as a viewer sees it, camera motion
 *   removed; the degraded input's is given for reference;
 * - fps of the whole restore (decode, detect, track, restore, paste, encode).
 *
 * Then (unless --no-rss) the peak RSS of `osdface restore` on a clip of --rss-frames frames and one
 * 3 times longer. --tune only runs detection and tracking over the clip for a grid of one-euro
 * settings (no restoring), to choose the defaults.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../src/cli/args.js';
import { OSDFace } from '../src/osdface.js';
import { loadDetector, type Detector } from '../src/face/detectors.js';
import type { Landmarks5 } from '../src/face/detector.js';
import { alignFace } from '../src/face/align.js';
import type { RgbImage } from '../src/image/io.js';
import { resolveModelDir } from '../src/pipeline/default_model.js';
import { toolPath } from '../src/video/ffmpeg_path.js';
import { probeVideo } from '../src/video/probe.js';
import { FrameReader } from '../src/video/frames.js';
import { restoreVideo } from '../src/video/restore_video.js';
import { FaceTracker, DEFAULT_FACE_ONE_EURO } from '../src/video/tracker.js';
import { cropJitter, landmarkJitter, polyFit } from '../src/video/jitter.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = path.resolve(repoRoot, '../shared');

const { flags } = parseFlags(process.argv.slice(2), {
  model: { kind: 'string' }, threads: { kind: 'int' }, frames: { kind: 'int' }, fps: { kind: 'int' }, photo: { kind: 'string' },
  noise: { kind: 'int' }, 'jpeg-q': { kind: 'int' }, tune: { kind: 'bool' }, 'rss-frames': { kind: 'int' }, 'no-rss': { kind: 'bool' }, keep: { kind: 'string' }, out: { kind: 'string' },
});
const threads = (flags.get('threads') as number | undefined) ?? 2;
const nFrames = (flags.get('frames') as number | undefined) ?? 48;
const fps = (flags.get('fps') as number | undefined) ?? 24;
const noise = (flags.get('noise') as number | undefined) ?? 10;
const jpegQ = (flags.get('jpeg-q') as number | undefined) ?? 15;
const photo = (flags.get('photo') as string | undefined) ?? path.join(shared, 'data/whole/codeformer_03.jpg');
const modelDir = resolveModelDir(flags.get('model') as string | undefined);
const work = (flags.get('keep') as string | undefined) ?? fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-bench-video-'));
fs.mkdirSync(work, { recursive: true });

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out + err) : reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${code}\n${err.slice(-2000)}`))));
  });
}

/** The bench clip: `frames` frames at `fps`, 480x270, panned and zoomed, noisy, JPEG per frame, H.264 + sine audio. */
async function makeClip(file: string, frames: number): Promise<void> {
  const ffmpeg = toolPath('ffmpeg').path;
  const mjpeg = file.replace(/\.mp4$/, '.mjpeg.avi');
  const t = `(on/${Math.max(1, frames - 1)})`;
  // zoom 1.25 -> 1.5, window moving right 60 px and down 20 px (photo pixels; x8 in the upscaled photo)
  const zoompan = `zoompan=z='1.25+0.25*${t}':x='8*60*${t}':y='8*20*${t}':d=1:s=480x270:fps=${fps}`;
  await run(ffmpeg, ['-hide_banner', '-v', 'error', '-y', '-loop', '1', '-i', photo, '-vf', `scale=iw*8:ih*8:flags=bicubic,${zoompan},noise=alls=${noise}:allf=t`,
    '-frames:v', String(frames), '-c:v', 'mjpeg', '-q:v', String(jpegQ), mjpeg]);
  await run(ffmpeg, ['-hide_banner', '-v', 'error', '-y', '-i', mjpeg, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '10', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', file]);
  fs.rmSync(mjpeg);
}

async function readFrames(file: string): Promise<RgbImage[]> {
  const info = await probeVideo(file);
  const reader = new FrameReader(file, info.width, info.height);
  const out: RgbImage[] = [];
  for await (const data of reader.frames()) out.push({ data, width: info.width, height: info.height, channels: 3 });
  return out;
}

const eyeDistance = (l: Landmarks5) => Math.hypot(l[0][0] - l[1][0], l[0][1] - l[1][1]);

/** RMS distance (px) between two landmark tracks. */
function deviation(a: readonly Landmarks5[], b: readonly Landmarks5[]): number {
  let s = 0;
  let n = 0;
  for (let t = 0; t < a.length; t++) for (let k = 0; k < 5; k++) { s += (a[t]![k]![0] - b[t]![k]![0]) ** 2 + (a[t]![k]![1] - b[t]![k]![1]) ** 2; n++; }
  return Math.sqrt(s / n);
}

/** Per-frame detections of the (one) face: the raw landmarks. */
async function detectAll(detector: Detector, frames: RgbImage[]): Promise<Landmarks5[]> {
  const out: Landmarks5[] = [];
  for (const f of frames) {
    const d = await detector.detect(f);
    if (d.length === 0) throw new Error(`bench:video: no face in frame ${out.length}`);
    out.push(d[0]!.landmarks);
  }
  return out;
}

/** The cubic-in-time fit of each landmark coordinate: the camera's smooth motion. */
function smoothMotion(raw: readonly Landmarks5[]): Landmarks5[] {
  const fits = Array.from({ length: 10 }, (_, i) => polyFit(raw.map((l) => l[i >> 1]![i & 1]!), 3));
  return raw.map((_, t) => Array.from({ length: 5 }, (_, k) => [fits[2 * k]![t]!, fits[2 * k + 1]![t]!]) as Landmarks5);
}

function faceJitter(frames: RgbImage[], reference: readonly Landmarks5[]): number {
  return cropJitter(frames.map((f, t) => alignFace(f, reference[t]!, { size: 128 }).crop));
}

const f2 = (v: number) => v.toFixed(2);
const f3 = (v: number) => v.toFixed(3);

async function peakRss(clip: string, out: string): Promise<{ frames: number; maxRssMb: number; seconds: number }> {
  const hook = path.join(work, 'maxrss.mjs');
  fs.writeFileSync(hook, "process.on('exit', () => process.stderr.write(`maxrss_kb=${process.resourceUsage().maxRSS}\\n`));\n");
  const t0 = performance.now();
  const text = await run(process.execPath, ['--import', hook, path.join(repoRoot, 'dist/src/cli/main.js'), 'restore', clip, '-o', out, '--model', modelDir, '--threads', String(threads)]);
  const kb = Number(/maxrss_kb=(\d+)/.exec(text)?.[1]);
  const frames = Number(/\((\d+) frames,/.exec(text)?.[1]);
  return { frames, maxRssMb: kb / 1024, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  const clip = path.join(work, 'clip.mp4');
  process.stderr.write(`bench:video: making ${clip} (${nFrames} frames at ${fps} fps) from ${photo}\n`);
  await makeClip(clip, nFrames);
  const input = await readFrames(clip);
  const detector = await loadDetector('retinaface', { threads });
  const raw = await detectAll(detector, input);
  const reference = smoothMotion(raw);
  const eye = raw.reduce((s, l) => s + eyeDistance(l), 0) / raw.length;
  process.stderr.write(`bench:video: mean eye distance ${f2(eye)} px; raw landmark jitter ${f3(landmarkJitter(raw))} px\n`);

  if (flags.has('tune')) {
    const rows: string[] = ['| minCutoff | beta | jitter px | deviation px |', '|---:|---:|---:|---:|'];
    for (const minCutoff of [0.5, 1, 1.5, 2]) {
      for (const beta of [0, 4, 8, 16, 32]) {
        const tracker = new FaceTracker({ oneEuro: { ...DEFAULT_FACE_ONE_EURO, minCutoff, beta } });
        const used: Landmarks5[] = [];
        for (let t = 0; t < input.length; t++) {
          const f = tracker.update(await detector.detect(input[t]!), t / fps);
          used.push(f[0]!.landmarks);
        }
        rows.push(`| ${minCutoff} | ${beta} | ${f3(landmarkJitter(used))} | ${f3(deviation(used, reference))} |`);
      }
    }
    rows.push(`| (raw) | | ${f3(landmarkJitter(raw))} | ${f3(deviation(raw, reference))} |`);
    process.stdout.write(`${rows.join('\n')}\n`);
    await detector.dispose();
    return;
  }

  const model = await OSDFace.load(modelDir, { threads });
  const results: Record<string, unknown>[] = [];
  const rows = [
    '| run | landmark jitter px (% eye dist.) | deviation from smooth motion px | face jitter (0-255) | fps |',
    '|---|---:|---:|---:|---:|',
    `| degraded input (per-frame detections) | ${f3(landmarkJitter(raw))} (${f2((100 * landmarkJitter(raw)) / eye)}) | ${f3(deviation(raw, reference))} | ${f2(faceJitter(input, reference))} | |`,
  ];
  for (const smooth of [false, true]) {
    const out = path.join(work, smooth ? 'smoothed.mp4' : 'per-frame.mp4');
    const used: Landmarks5[] = [];
    const res = await restoreVideo(model, detector, clip, out, {
      smooth, onFaces: (_t, faces) => { if (faces[0]) used.push(faces[0].landmarks); },
      onProgress: (done, total) => process.stderr.write(`\rbench:video: ${smooth ? 'smoothed' : 'per-frame'} ${done}/${total}`),
    });
    process.stderr.write('\n');
    const lj = landmarkJitter(used);
    const fj = faceJitter(await readFrames(out), reference);
    const fpsDone = res.frames / res.seconds;
    results.push({ run: smooth ? 'tracked+smoothed' : 'per-frame', frames: res.frames, landmarkJitterPx: lj, deviationPx: deviation(used, reference), faceJitter: fj, fps: fpsDone });
    rows.push(`| ${smooth ? 'tracked + smoothed (default)' : 'per-frame (--no-smooth)'} | ${f3(lj)} (${f2((100 * lj) / eye)}) | ${f3(deviation(used, reference))} | ${f2(fj)} | ${f3(fpsDone)} |`);
  }
  await Promise.all([model.dispose(), detector.dispose()]);
  process.stdout.write(`\nbench:video: ${path.basename(photo)}, ${nFrames} frames at ${fps} fps (480x270, noise ${noise}, JPEG q ${jpegQ}, eye distance ${f2(eye)} px), model ${path.relative(repoRoot, modelDir) || modelDir}, ${threads} threads\n\n${rows.join('\n')}\n`);

  const rss: Record<string, unknown>[] = [];
  if (!flags.has('no-rss')) {
    const short = (flags.get('rss-frames') as number | undefined) ?? 16;
    const rrows = ['| clip | frames | peak RSS (MB) | seconds |', '|---|---:|---:|---:|'];
    for (const n of [short, 3 * short]) {
      const c = path.join(work, `rss-${n}.mp4`);
      await makeClip(c, n);
      const r = await peakRss(c, path.join(work, `rss-out-${n}`));
      rss.push({ frames: r.frames, maxRssMb: r.maxRssMb, seconds: r.seconds });
      rrows.push(`| ${n === short ? 'short' : '3x longer'} | ${r.frames} | ${r.maxRssMb.toFixed(0)} | ${r.seconds.toFixed(1)} |`);
    }
    process.stdout.write(`\npeak RSS of \`osdface restore <clip> -o <dir> --threads ${threads}\` (the node process; the two ffmpeg processes stream):\n\n${rrows.join('\n')}\n`);
  }
  if (flags.has('out')) fs.writeFileSync(flags.get('out') as string, `${JSON.stringify({ photo, frames: nFrames, fps, noise, jpegQ, eyeDistance: eye, threads, model: modelDir, results, rss }, null, 2)}\n`);
  if (!flags.has('keep')) fs.rmSync(work, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:video: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
