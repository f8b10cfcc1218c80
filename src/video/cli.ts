/**
 * `osdface restore <video>... -o <out dir>`: the video side of the restore command (main.ts sends
 * every run whose inputs are videos here). Takes the photo options (parsed by restore_options.ts,
 * so every option a photo takes reaches each frame) and the video ones: --crf, --preset,
 * --start, --duration, --no-smooth.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { OSDFace } from '../osdface.js';
import type { Detector } from '../face/detectors.js';
import { readManifest, type Manifest } from '../pipeline/manifest.js';
import { resolveModelDir } from '../pipeline/default_model.js';
import type { FlagSpec, Flags } from '../cli/args.js';
import { parseRestoreSettings, SEED_LIMIT } from '../cli/restore_options.js';
import { loadForRestore } from '../cli/restore_load.js';
import { formatDuration, plural } from '../cli/restore_progress.js';
import { X264_PRESETS, type X264Preset } from './encoder.js';
import { probeVideo } from './probe.js';
import { restoreVideo, videoOutputPath, VIDEO_CONTAINERS, type RestoreVideoResult, type VideoPhotoOptions } from './restore_video.js';
import { VideoProgress } from './progress.js';

export const VIDEO_FLAGS: Record<string, FlagSpec> = {
  crf: { kind: 'int' },
  preset: { kind: 'string', choices: X264_PRESETS },
  start: { kind: 'number' },
  duration: { kind: 'number' },
  'no-smooth': { kind: 'bool' },
};

/** Video containers osdface does not restore: a clear usage error instead of "cannot read the image". */
const OTHER_VIDEO_EXTENSIONS = ['m4v', 'flv', 'f4v', 'wmv', 'asf', 'mpg', 'mpeg', 'm2v', 'ts', 'mts', 'm2ts', 'vob', '3gp', '3g2', 'ogv', 'rm', 'rmvb', 'divx', 'y4m'];

/** Photo-only options that have no meaning for a video. */
const IMAGE_ONLY_FLAGS = ['aligned', 'size', 'format', 'compare', 'save-faces'] as const;

export const VIDEO_HELP = `videos (mp4, mov, mkv, webm, avi):
  osdface restore <video>... -o <out dir> [photo options] [--crf N] [--start S] [--duration S]
                         Every frame's faces are detected, tracked across frames (each face
                         keeps its id), their landmarks smoothed in time (one-euro filter),
                         then restored as in a photo and pasted back. Output: <out dir>/<name>
                         in the input's container (webm -> .mkv), H.264, with the input's
                         frame rate, frame count and duration, and its audio copied unchanged.
                         A video without a face is re-encoded unchanged, with a note.
  --crf <N>              x264 quality, 0-51, lower is better and larger (default 18)
  --preset <name>        x264 preset, ultrafast ... veryslow (default medium)
  --start <s>            restore from this many seconds into the video (default 0)
  --duration <s>         restore this many seconds (default: to the end)
  --no-smooth            align each frame on its own landmarks (no smoothing in time)
  Photo options apply to every frame; --aligned, --size, --format, --compare and --save-faces
  apply to images only. ffmpeg: the one on PATH, else the one shipped in @ffmpeg-installer/ffmpeg.
`;

const extOf = (p: string) => path.extname(p).slice(1).toLowerCase();

/** True for an input osdface restores as a video (by its extension). */
export function isVideoInput(p: string): boolean {
  return extOf(p) in VIDEO_CONTAINERS;
}

/** For a run of images: refuses the video options and video files osdface cannot restore. */
export function checkImageRun(flags: Flags, positionals: readonly string[], usage: (msg: string) => Error): void {
  const other = positionals.find((p) => OTHER_VIDEO_EXTENSIONS.includes(extOf(p)));
  if (other !== undefined) {
    throw usage(`${other}: .${extOf(other)} videos are not supported; osdface restores ${Object.keys(VIDEO_CONTAINERS).join(', ')} videos (remux it first: ffmpeg -i ${other} -c copy <name>.mkv)`);
  }
  const flag = Object.keys(VIDEO_FLAGS).find((f) => flags.has(f));
  if (flag !== undefined) throw usage(`--${flag} applies to videos (${Object.keys(VIDEO_CONTAINERS).join(', ')}), and no video was given`);
}

interface VideoEntry {
  input: string;
  output: string | null;
  status?: 'ok' | 'unchanged' | 'failed' | 'skipped';
  result?: RestoreVideoResult;
  error?: string;
  reason?: string;
  seed?: number;
}

/** Runs `osdface restore` on videos; returns the exit code. */
export async function restoreVideoCommand(flags: Flags, positionals: readonly string[], usage: (msg: string) => Error): Promise<number> {
  const images = positionals.filter((p) => !isVideoInput(p));
  if (images.length > 0) throw usage(`${images[0]} is not a video (${Object.keys(VIDEO_CONTAINERS).join(', ')}); restore videos and images in separate commands`);
  const imageOnly = IMAGE_ONLY_FLAGS.find((f) => flags.has(f));
  if (imageOnly !== undefined) throw usage(`--${imageOnly} applies to images, not to videos`);
  const settings = parseRestoreSettings(flags, usage);
  // What is left once the image-only and loading settings are taken out goes to every frame as a photo option.
  const { mode: _mode, format: _format, size: _size, compare: _compare, saveFaces: _saveFaces, json, skipExisting,
    detector: _detector, threads: _threads, vaeTiling: _vaeTiling, lowMemory: _lowMemory, device: _device, seed: seedFlag, ...photo } = settings;
  const crf = flags.get('crf') as number | undefined;
  if (crf !== undefined && crf > 51) throw usage(`--crf must be from 0 to 51, got ${crf}`);
  const start = flags.get('start') as number | undefined;
  if (start !== undefined && start < 0) throw usage(`--start must be 0 or more seconds, got ${start}`);
  const duration = flags.get('duration') as number | undefined;
  if (duration !== undefined && !(duration > 0)) throw usage(`--duration must be more than 0 seconds, got ${duration}`);
  const outDir = flags.get('out') as string | undefined;
  if (outDir === undefined) throw usage('-o <out dir> is required: the folder the restored videos go to');
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) throw usage(`-o ${outDir} is a file; give a folder (it is created if missing)`);
  const log = (msg: string) => process.stderr.write(`osdface restore: ${msg}\n`);

  let modelDir: string;
  let manifest: Manifest;
  try {
    modelDir = resolveModelDir(flags.get('model') as string | undefined);
    manifest = readManifest(modelDir);
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return 2;
  }

  const entries: VideoEntry[] = [];
  const writers = new Map<string, string>();
  for (const input of positionals) {
    const output = videoOutputPath(input, outDir);
    const e: VideoEntry = { input, output };
    entries.push(e);
    const taken = writers.get(path.resolve(output));
    const error = !fs.existsSync(input) ? 'no such file'
      : !fs.statSync(input).isFile() ? 'not a file'
      : path.resolve(output) === path.resolve(input) ? `the output ${output} would overwrite this input; choose another -o folder`
      : taken !== undefined ? `the output ${output} is already written for ${taken}; restore files with the same name into separate folders`
      : undefined;
    if (error !== undefined) {
      e.status = 'failed';
      e.error = error;
    } else {
      writers.set(path.resolve(output), input);
      if (skipExisting && fs.existsSync(output)) {
        e.status = 'skipped';
        e.reason = `${output} exists (--skip-existing)`;
      }
    }
  }
  let seed = seedFlag;
  if (photo.latent === 'sample') {
    if (seed === undefined) {
      seed = crypto.randomInt(0, SEED_LIMIT - 1);
      log(`--latent sample without --seed: using seed ${seed} (video k of the list uses ${seed}+k, the same in every frame)`);
    }
    entries.forEach((e, k) => { e.seed = (seed! + k) % SEED_LIMIT; });
  }

  const todo = entries.filter((e) => !e.status);
  let model: OSDFace | null = null;
  let detector: Detector | null = null;
  const controller = new AbortController();
  let signalled: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) process.exit(sig === 'SIGTERM' ? 143 : 130); // the exit hook kills ffmpeg and removes the partial file
    signalled = sig;
    process.stderr.write(`\nosdface restore: interrupted; stopping after the current frame, the unfinished video is removed (${sig === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to stop now)\n`);
    controller.abort(new Error('interrupted'));
  };
  const started = Date.now();
  let n = 0;
  const report = (e: VideoEntry) => {
    n++;
    const counter = `[${n}/${entries.length}]`;
    if (e.status === 'failed') log(`${counter} failed    ${e.input}: ${e.error}`);
    else if (e.status === 'skipped') log(`${counter} skipped   ${e.input} (${e.reason})`);
    else {
      const r = e.result!;
      const faces = r.faceFrames > 0 ? `${plural(r.tracks, 'face')} restored in ${r.framesWithFaces} of ${r.frames} frames` : 'no face restored';
      log(`${counter} ${e.status!.padEnd(9)} ${e.input} -> ${e.output} (${r.frames} frames, ${Number(r.fps.toFixed(3))} fps, ${r.duration.toFixed(2)} s; ${faces}; ${formatDuration(r.seconds)}, ${(r.frames / r.seconds).toFixed(2)} fps)`);
      for (const note of r.notices) log(`note: ${e.input}: ${note}`);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (todo.length > 0) {
      log(`loading ${manifest.dtype} model ${modelDir}`);
      const loaded = await loadForRestore(modelDir, settings, log, { detector: true });
      if ('exitCode' in loaded) return loaded.exitCode;
      ({ model, detector } = loaded);
      fs.mkdirSync(outDir, { recursive: true });
      log(`loaded in ${((Date.now() - started) / 1000).toFixed(1)} s; restoring ${plural(todo.length, 'video')} into ${outDir}`);
    }
    for (const e of entries) {
      if (e.status) {
        report(e);
        continue;
      }
      if (signalled) {
        e.status = 'failed';
        e.error = 'interrupted before this video';
        report(e);
        continue;
      }
      const progress = new VideoProgress(path.basename(e.input));
      try {
        const info = await probeVideo(e.input);
        const videoPhoto: VideoPhotoOptions = { ...photo, ...(e.seed !== undefined ? { seed: e.seed } : {}) };
        e.result = await restoreVideo(model!, detector!, e.input, e.output!, {
          info, photo: videoPhoto, smooth: !flags.has('no-smooth'),
          ...(crf !== undefined ? { crf } : {}),
          ...(flags.has('preset') ? { preset: flags.get('preset') as X264Preset } : {}),
          ...(start !== undefined ? { start } : {}),
          ...(duration !== undefined ? { duration } : {}),
          onProgress: (done, total) => progress.update(done, total),
          signal: controller.signal,
        });
        e.status = e.result.faceFrames > 0 ? 'ok' : 'unchanged';
      } catch (err) {
        e.status = 'failed';
        e.error = signalled ? 'interrupted: nothing written' : (err instanceof Error ? err.message : String(err));
        if (e.error.startsWith(`${e.input}: `)) e.error = e.error.slice(e.input.length + 2);
      }
      progress.end();
      report(e);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.all([model?.dispose(), detector?.dispose()]);
  }

  const count = (s: VideoEntry['status']) => entries.filter((e) => e.status === s).length;
  const [ok, unchanged, failed, skipped] = [count('ok'), count('unchanged'), count('failed'), count('skipped')];
  log(`${ok} restored, ${unchanged} unchanged (no face restored: see the notes), ${failed} failed, ${skipped} skipped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (json) {
    const videos = entries.map((e) => ({
      input: e.input, output: e.output, status: e.status!,
      ...(e.result ? {
        frames: e.result.frames, fps: e.result.fps, duration: Number(e.result.duration.toFixed(3)), width: e.result.width, height: e.result.height,
        faces: e.result.tracks, faceFrames: e.result.faceFrames, framesWithFaces: e.result.framesWithFaces, audio: e.result.audio,
        notices: e.result.notices, seconds: Number(e.result.seconds.toFixed(3)),
      } : {}),
      ...(e.seed !== undefined && e.result ? { seed: e.seed } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    }));
    process.stdout.write(`${JSON.stringify({ model: path.resolve(modelDir), mode: 'video', videos, ok, unchanged, failed, skipped }, null, 2)}\n`);
  }
  if (signalled) return signalled === 'SIGTERM' ? 143 : 130;
  return failed > 0 ? 1 : 0;
}
