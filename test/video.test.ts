/**
 * `osdface restore <video>`: end to end on short clips that the test makes with ffmpeg (the
 * one on PATH, or the binary shipped in @ffmpeg-installer/ffmpeg), with the tiny model converted
 * from parity-a (process size 64) and the RetinaFace detector; and the face tracker / one-euro
 * smoothing as units.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { convertParityA, noFixtures, repoRoot, shared } from './helpers.js';
import { toolPath } from '../src/video/ffmpeg_path.js';
import { FaceTracker } from '../src/video/tracker.js';
import { landmarkJitter } from '../src/video/jitter.js';
import type { DetectedFace, Landmarks5 } from '../src/face/detector.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
/** 400 x 225, one face (eye distance 46 px). */
const PHOTO = path.join(shared, 'data/whole/codeformer_03.jpg');
const skip = noFixtures || (fs.existsSync(PHOTO) ? false : `photo not found: ${PHOTO}`);

let work = '';
let modelDir = '';
let ffmpeg = '';
let ffprobe = '';

function osdface(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
}

function ff(...args: string[]): void {
  execFileSync(ffmpeg, ['-hide_banner', '-v', 'error', '-y', ...args]);
}

interface Stream { codec_type: string; codec_name: string; nb_frames?: string; r_frame_rate: string; duration?: string; width?: number; height?: number; pix_fmt?: string }

function probe(file: string): { streams: Stream[]; format: { duration: string } } {
  return JSON.parse(execFileSync(ffprobe, ['-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' }));
}

/** Decoded frames counted by ffprobe (not the container's own count). */
function countFrames(file: string): number {
  const s = probe(file).streams.find((x) => x.codec_type === 'video') as Stream & { nb_read_frames: string };
  return Number(s.nb_read_frames);
}

/** md5 of the audio packets, copied as they are. */
function audioMd5(file: string): string {
  return execFileSync(ffmpeg, ['-hide_banner', '-v', 'error', '-i', file, '-map', '0:a', '-c', 'copy', '-f', 'md5', '-'], { encoding: 'utf8' }).trim();
}

/** Raw rgb24 frames of a video. */
function frames(file: string): Buffer {
  return execFileSync(ffmpeg, ['-hide_banner', '-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 28 });
}

interface Summary { mode: string; videos: { input: string; output: string; status: string; frames?: number; faces?: number; framesWithFaces?: number; notices?: string[]; error?: string }[]; ok: number; unchanged: number; failed: number }

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-video-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  ffmpeg = toolPath('ffmpeg').path;
  ffprobe = toolPath('ffprobe').path;
  // 1 s at 10 fps, 320 x 180, the face panning slowly, with a 440 Hz tone (AAC)
  ff('-loop', '1', '-i', PHOTO, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '1', '-r', '10',
    '-vf', "scale=384:216,crop=320:180:'32+30*sin(t)':18", '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path.join(work, 'face.mp4'));
  // the same, 4 s, for the interruption
  ff('-loop', '1', '-i', PHOTO, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '4', '-r', '10',
    '-vf', 'scale=320:180', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path.join(work, 'long.mp4'));
  // no face: a test pattern, 1 s at 10 fps, with PCM audio in a QuickTime file
  ff('-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=22050', '-t', '1',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'pcm_s16le', path.join(work, 'pattern.mov'));
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('a clip is restored end to end: frame count, frame rate, duration and audio kept', { skip }, () => {
  const input = path.join(work, 'face.mp4');
  const out = path.join(work, 'out-e2e');
  const r = osdface('restore', input, '-o', out, '--model', modelDir, '--threads', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  assert.equal(summary.mode, 'video');
  const v = summary.videos[0]!;
  assert.equal(v.status, 'ok');
  assert.equal(v.output, path.join(out, 'face.mp4'));
  assert.equal(v.faces, 1, 'one face, tracked through the clip with one id');
  assert.equal(v.framesWithFaces, 10);
  assert.deepEqual(fs.readdirSync(out), ['face.mp4'], 'nothing but the output is left in the folder');
  assert.match(r.stderr, /\[1\/1\] ok +.*face\.mp4 -> .*face\.mp4 \(10 frames, 10 fps, 1\.00 s/);

  const a = probe(input);
  const b = probe(v.output);
  const av = a.streams.find((s) => s.codec_type === 'video')!;
  const bv = b.streams.find((s) => s.codec_type === 'video')!;
  assert.equal(countFrames(v.output), countFrames(input));
  assert.equal(bv.r_frame_rate, av.r_frame_rate);
  assert.ok(Math.abs(Number(bv.duration) - Number(av.duration)) < 1e-6, `video duration ${bv.duration} vs ${av.duration}`);
  assert.ok(Math.abs(Number(b.format.duration) - Number(a.format.duration)) < 0.05, `container duration ${b.format.duration} vs ${a.format.duration}`);
  assert.equal(bv.codec_name, 'h264');
  assert.equal(bv.pix_fmt, 'yuv420p');
  assert.equal([bv.width, bv.height].join('x'), '320x180');
  assert.equal(b.streams.find((s) => s.codec_type === 'audio')?.codec_name, 'aac');
  assert.equal(audioMd5(v.output), audioMd5(input), 'the audio packets are copied unchanged');
  // the face was restored: the output differs from the input around it
  const fi = frames(input);
  const fo = frames(v.output);
  assert.equal(fo.length, fi.length);
  let diff = 0;
  for (let i = 0; i < fi.length; i++) diff += Math.abs(fi[i]! - fo[i]!);
  assert.ok(diff / fi.length > 1, `mean change ${diff / fi.length}`);

  // --start / --duration: a part of the clip, its audio cut the same way
  const part = osdface('restore', input, '-o', path.join(work, 'out-part'), '--model', modelDir, '--threads', '2', '--start', '0.4', '--duration', '0.3', '--no-smooth', '--crf', '23');
  assert.equal(part.status, 0, part.stderr);
  const po = path.join(work, 'out-part', 'face.mp4');
  assert.equal(countFrames(po), 3);
  const pa = probe(po).streams.find((s) => s.codec_type === 'audio')!;
  assert.ok(Math.abs(Number(pa.duration) - 0.3) < 0.05, `audio of the part: ${pa.duration} s`);
});

test('a video without a face is re-encoded unchanged, with a notice', { skip }, () => {
  const input = path.join(work, 'pattern.mov');
  const out = path.join(work, 'out-noface');
  const r = osdface('restore', input, '-o', out, '--model', modelDir, '--threads', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const v = (JSON.parse(r.stdout) as Summary).videos[0]!;
  assert.equal(v.status, 'unchanged');
  assert.equal(v.output, path.join(out, 'pattern.mov'));
  assert.ok(v.notices!.some((n) => n.startsWith('no face found in any of the 10 frames: the video is re-encoded unchanged')), JSON.stringify(v.notices));
  assert.match(r.stderr, /note: .*pattern\.mov: no face found in any of the 10 frames/);
  assert.equal(countFrames(v.output), 10);
  assert.equal(probe(v.output).streams.find((s) => s.codec_type === 'audio')?.codec_name, 'pcm_s16le');
  assert.equal(audioMd5(v.output), audioMd5(input));
  const fi = frames(input);
  const fo = frames(v.output);
  let diff = 0;
  for (let i = 0; i < fi.length; i++) diff += Math.abs(fi[i]! - fo[i]!);
  assert.ok(diff / fi.length < 3, `only re-encoding changes the pixels: mean change ${diff / fi.length}`);
});

test('a corrupt video gives a clear error that names the file, and writes nothing', { skip }, () => {
  const bad = path.join(work, 'broken.mp4');
  const good = fs.readFileSync(path.join(work, 'face.mp4'));
  fs.writeFileSync(bad, good.subarray(0, 600)); // truncated: the header is cut off
  const garbage = path.join(work, 'noise.mkv');
  fs.writeFileSync(garbage, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
  const out = path.join(work, 'out-bad');
  const r = osdface('restore', bad, garbage, '-o', out, '--model', modelDir, '--threads', '2');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /failed +.*broken\.mp4: cannot read the video: .+ \(the file is damaged, truncated or not a video\)/);
  assert.match(r.stderr, /failed +.*noise\.mkv: cannot read the video: /);
  assert.deepEqual(fs.existsSync(out) ? fs.readdirSync(out) : [], []);
});

test('usage errors: an unsupported video format, videos mixed with images, options of the other kind', { skip }, () => {
  const flv = path.join(work, 'clip.flv');
  fs.writeFileSync(flv, 'x');
  let r = osdface('restore', flv, '-o', path.join(work, 'o'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^osdface restore: .*clip\.flv: \.flv videos are not supported; osdface restores mp4, mov, mkv, webm, avi videos/);
  r = osdface('restore', path.join(work, 'face.mp4'), PHOTO, '-o', path.join(work, 'o'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /codeformer_03\.jpg is not a video .*restore videos and images in separate commands/);
  r = osdface('restore', PHOTO, '-o', path.join(work, 'o'), '--crf', '20');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--crf applies to videos/);
  r = osdface('restore', path.join(work, 'face.mp4'), '-o', path.join(work, 'o'), '--compare');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--compare applies to images, not to videos/);
  r = osdface('restore', path.join(work, 'face.mp4'), '-o', path.join(work, 'o'), '--crf', '60');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--crf must be from 0 to 51/);
  assert.ok(!fs.existsSync(path.join(work, 'o')));
});

/** The pids of `pid`'s children (Linux). */
function childrenOf(pid: number): number[] {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

test('Ctrl-C mid-run leaves nothing behind in the output folder and stops ffmpeg', { skip }, async () => {
  const out = path.join(work, 'out-int');
  const child = spawn(process.execPath, [cli, 'restore', path.join(work, 'long.mp4'), '-o', out, '--model', modelDir, '--threads', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  // mid-run: the encoder has opened the partial file and at least one frame has been read
  let pids: number[] = [];
  for (;;) {
    const partial = fs.existsSync(out) && fs.readdirSync(out).some((f) => f.includes('.osdface-partial-'));
    if (partial) {
      pids = childrenOf(child.pid!);
      break;
    }
    if (child.exitCode !== null) assert.fail(`the restore ended before it could be interrupted:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGINT');
  const code = await exited;
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted; stopping after the current frame/);
  assert.deepEqual(fs.readdirSync(out), [], 'no partial or finished video is left');
  if (process.platform === 'linux') {
    assert.ok(pids.length >= 2, `the decoder and the encoder were running: ${pids.join(' ')}`);
    for (const pid of pids) assert.ok(!fs.existsSync(`/proc/${pid}`), `ffmpeg ${pid} is gone`);
  }
});

// ---------------------------------------------------------------------------------------------
// Tracking and smoothing (no model)

/** A deterministic standard normal sequence. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** A face of width ~100 px at centre (cx, cy): its detection with landmarks offset by `noise`. */
function face(cx: number, cy: number, noise: () => number = () => 0): DetectedFace {
  const lm = [[-20, -15], [20, -15], [0, 5], [-15, 25], [15, 25]].map(([dx, dy]) => [cx + dx! + noise(), cy + dy! + noise()]) as Landmarks5;
  return { box: { x: cx - 50, y: cy - 60, width: 100, height: 120 }, score: 0.99, landmarks: lm };
}

test('the one-euro smoothing lowers landmark jitter on a noisy track, and follows the motion', () => {
  const fps = 25;
  const noise = gaussian(7);
  const truth: Landmarks5[] = [];
  const raw: Landmarks5[] = [];
  const smoothed: Landmarks5[] = [];
  const plain: Landmarks5[] = [];
  const tracker = new FaceTracker();
  const perFrame = new FaceTracker({ smooth: false });
  for (let t = 0; t < 100; t++) {
    // a slow sway: 30 px over 2 s, plus a drift of 20 px/s
    const cx = 200 + 15 * Math.sin((2 * Math.PI * t) / (2 * fps)) + (20 * t) / fps;
    const cy = 150 + 5 * Math.cos((2 * Math.PI * t) / (3 * fps));
    truth.push(face(cx, cy).landmarks);
    const det = face(cx, cy, () => 1.5 * noise());
    raw.push(det.landmarks);
    smoothed.push(tracker.update([det], t / fps)[0]!.landmarks);
    plain.push(perFrame.update([det], t / fps)[0]!.landmarks);
  }
  assert.deepEqual(plain, raw, '--no-smooth aligns on the detector\'s landmarks as they are');
  const jRaw = landmarkJitter(raw);
  const jSmooth = landmarkJitter(smoothed);
  assert.ok(jRaw > 1.2 && jRaw < 1.8, `the noise is measured: ${jRaw}`);
  assert.ok(jSmooth < jRaw / 2, `jitter ${jSmooth} (smoothed) vs ${jRaw} (per frame)`);
  // ... and it does not trade the noise for lag: closer to the true motion than the raw landmarks
  const err = (a: Landmarks5[]) => Math.sqrt(a.slice(10).reduce((s, l, t) => s + l.reduce((u, p, k) => u + (p[0] - truth[t + 10]![k]![0]) ** 2 + (p[1] - truth[t + 10]![k]![1]) ** 2, 0), 0) / (5 * (a.length - 10)));
  assert.ok(err(smoothed) < err(raw), `RMS error to the true motion ${err(smoothed)} (smoothed) vs ${err(raw)} (per frame)`);
});

test('faces keep their ids across frames, whatever the detection order; a face missing too long is dropped', () => {
  const tracker = new FaceTracker({ maxMissing: 2 });
  const first = tracker.update([face(100, 100), face(400, 100)], 0);
  assert.deepEqual(first.map((f) => f.id), [0, 1]);
  // moving 10 px per frame, listed in the other order
  for (let t = 1; t <= 5; t++) {
    const ids = tracker.update([face(400 - 10 * t, 100), face(100 + 10 * t, 100)], t / 25);
    assert.deepEqual(ids.map((f) => f.id), [1, 0]);
  }
  // face 1 missed for 2 frames (kept), then back
  tracker.update([face(160, 100)], 6 / 25);
  tracker.update([face(170, 100)], 7 / 25);
  assert.deepEqual(tracker.update([face(180, 100), face(340, 100)], 8 / 25).map((f) => f.id), [0, 1]);
  // face 1 missed for 3 frames: dropped, and a new id when it shows again
  for (let t = 9; t <= 11; t++) tracker.update([face(100 + 10 * t, 100)], t / 25);
  assert.deepEqual(tracker.update([face(220, 100), face(340, 100)], 12 / 25).map((f) => f.id), [0, 2]);
  assert.equal(tracker.trackCount, 3);
});
