/**
 * Restores the faces of a video, frame by frame, as a stream: ffmpeg decodes raw frames into a
 * pipe (frames.ts), each frame's faces are detected, tracked across frames and their landmarks
 * smoothed in time (tracker.ts), the frame goes through the photo path with those landmarks
 * (OSDFace.restorePhoto: align, restore, paste back, every photo option), and the restored frame
 * is written into a second ffmpeg that encodes H.264 and copies the input's audio (encoder.ts).
 * Only a frame or two is in memory at a time. The output is written under a temporary name in
 * its folder and renamed when complete; an error or an abort kills both ffmpeg processes and
 * removes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { OSDFace, OSDFacePhotoOptions } from '../osdface.js';
import type { Detector } from '../face/detectors.js';
import type { DetectOptions } from '../face/detector.js';
import { FrameReader } from './frames.js';
import { FrameWriter, type X264Preset } from './encoder.js';
import { probeVideo, VideoError, type VideoInfo } from './probe.js';
import { FaceTracker, type TrackedFace } from './tracker.js';
import { releasePartial, trackPartial } from './children.js';
import type { OneEuroOptions } from './one_euro.js';

/** The video containers restored, by extension, and the ffmpeg muxer the output is written with. */
export const VIDEO_CONTAINERS: Record<string, { muxer: string; ext: string }> = {
  mp4: { muxer: 'mp4', ext: 'mp4' },
  mov: { muxer: 'mov', ext: 'mov' },
  mkv: { muxer: 'matroska', ext: 'mkv' },
  // WebM takes VP8 / VP9 / AV1 only: the H.264 output goes into Matroska, WebM's parent format.
  webm: { muxer: 'matroska', ext: 'mkv' },
  avi: { muxer: 'avi', ext: 'avi' },
};

/** The photo options every frame is restored with (what `restorePhoto` takes, less what the video path decides). */
export type VideoPhotoOptions = Omit<OSDFacePhotoOptions, 'faces' | 'detector' | 'detect' | 'saveFaces'>;

export interface RestoreVideoOptions {
  /** Photo options for each frame (upscale, background, minEyeDistance, latent, seed, batch...). */
  photo?: VideoPhotoOptions;
  /** Detector options (score threshold, multi-scale search). */
  detect?: DetectOptions;
  /** Smooth the landmarks in time (default true). */
  smooth?: boolean;
  /** One-euro settings in face sizes (default: the tracker's). */
  oneEuro?: OneEuroOptions;
  /** x264 quality (default 18) and preset (default medium). */
  crf?: number;
  preset?: X264Preset;
  /** Restore the part from `start` seconds, `duration` seconds long (default: all of it). */
  start?: number;
  duration?: number;
  /** Called after each frame: frames done, frames expected (an estimate when the container has no count). */
  onProgress?: (done: number, total: number) => void;
  /** Called with each frame's tracked faces (raw and smoothed landmarks). */
  onFaces?: (frame: number, faces: TrackedFace[]) => void;
  /** Aborting stops after the current frame; the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Probe result of the input, when the caller has it. */
  info?: VideoInfo;
}

export interface RestoreVideoResult {
  input: string;
  output: string;
  /** Frames written, their rate and the output's duration (frames / fps). */
  frames: number;
  fps: number;
  duration: number;
  width: number;
  height: number;
  /** Faces restored, summed over the frames. */
  faceFrames: number;
  /** Frames with at least one face restored. */
  framesWithFaces: number;
  /** Distinct faces (tracks) seen. */
  tracks: number;
  /** The audio codecs copied. */
  audio: string[];
  /** Remarks for people, each with the number of frames it applies to. */
  notices: string[];
  seconds: number;
}

/** The output path for `input` in `outDir`: same name, the container's extension (webm -> mkv). */
export function videoOutputPath(input: string, outDir: string): string {
  const { name, ext } = path.parse(input);
  const container = VIDEO_CONTAINERS[ext.slice(1).toLowerCase()];
  if (!container) throw new VideoError(input, `not a video osdface restores (${Object.keys(VIDEO_CONTAINERS).join(', ')})`);
  return path.join(outDir, `${name}.${container.ext}`);
}

/** A temporary name beside `output`, hidden, with the same extension. */
function partialPath(output: string): string {
  const { dir, name, ext } = path.parse(output);
  return path.join(dir, `.${name}.osdface-partial-${process.pid}${ext}`);
}

/** Restores `input` into `output` (a file path whose extension picks the container). */
export async function restoreVideo(model: OSDFace, detector: Detector, input: string, output: string, opts: RestoreVideoOptions = {}): Promise<RestoreVideoResult> {
  const started = performance.now();
  const info = opts.info ?? (await probeVideo(input));
  const ext = path.extname(output).slice(1).toLowerCase();
  const container = Object.values(VIDEO_CONTAINERS).find((c) => c.ext === ext);
  if (!container) throw new Error(`restoreVideo: the output ${output} must end in .mp4, .mov, .mkv or .avi`);
  const start = opts.start ?? 0;
  if (start > 0 && start >= info.duration) throw new VideoError(input, `--start ${start} s is at or past the end of the video (${info.duration.toFixed(2)} s)`);
  const length = Math.min(info.duration - start, opts.duration ?? Infinity);
  const total = Math.max(1, opts.start === undefined && opts.duration === undefined ? info.frames : Math.round(length * info.fps));
  const photo = opts.photo ?? {};
  const upscale = photo.upscale ?? 1;
  const width = info.width * upscale;
  const height = info.height * upscale;
  // Per-frame notices differ only in their numbers (an eye distance, a face's index): counted together, the first one shown.
  const notices = new Map<string, { text: string; frames: number }>();
  const note = (n: string) => {
    const key = n.replace(/\d+(\.\d+)?/g, '#');
    const seen = notices.get(key);
    if (seen) seen.frames++;
    else notices.set(key, { text: n, frames: 1 });
  };
  if (width % 2 !== 0 || height % 2 !== 0) note(`the frames are ${width}x${height}; H.264 (yuv420p) needs even sides, so the last ${width % 2 ? 'column' : 'row'}${width % 2 && height % 2 ? ' and row are' : ' is'} repeated once`);

  const part = partialPath(output);
  trackPartial(part);
  const range = { ...(opts.start !== undefined ? { start: opts.start } : {}), ...(opts.duration !== undefined ? { duration: opts.duration } : {}) };
  const reader = new FrameReader(input, info.width, info.height, { ...range, stream: info.videoStream });
  const writer = new FrameWriter({
    width, height, fps: info.fpsRational, audioFrom: input, ...range, crf: opts.crf ?? 18, preset: opts.preset ?? 'medium',
    muxer: container.muxer, output: part, audioCodecs: info.audio,
  });
  const tracker = new FaceTracker({ smooth: opts.smooth ?? true, ...(opts.oneEuro ? { oneEuro: opts.oneEuro } : {}) });
  let frames = 0;
  let faceFrames = 0;
  let framesWithFaces = 0;
  try {
    for await (const data of reader.frames()) {
      opts.signal?.throwIfAborted();
      const frame = { data, width: info.width, height: info.height, channels: 3 as const };
      const found = await detector.detect(frame, opts.detect);
      const faces = tracker.update(found, frames / info.fps);
      opts.onFaces?.(frames, faces);
      let out: Uint8Array = data;
      if (faces.length > 0 || upscale !== 1) {
        const res = await model.restorePhoto(frame, { ...photo, faces: faces.map((f) => ({ landmarks: f.landmarks, box: f.box, score: f.score })) });
        out = res.image.data;
        const restored = res.faces.filter((f) => f.status === 'restored').length;
        faceFrames += restored;
        if (restored > 0) framesWithFaces++;
        for (const n of res.notices) if (!n.startsWith('no face found')) note(n);
      }
      await writer.write(out);
      frames++;
      opts.onProgress?.(frames, Math.max(total, frames));
    }
    opts.signal?.throwIfAborted();
    if (frames === 0) throw new VideoError(input, start > 0 ? `no frame decoded from ${start} s on` : 'no frame could be decoded (the file is damaged or truncated)');
    await writer.finish();
    fs.renameSync(part, output);
    releasePartial(part);
  } catch (e) {
    await Promise.all([reader.kill(), writer.kill()]);
    fs.rmSync(part, { force: true });
    releasePartial(part);
    throw e;
  }
  if (faceFrames === 0) {
    note(tracker.trackCount === 0
      ? `no face found in any of the ${frames} frames: the video is re-encoded unchanged${upscale > 1 ? ` (upscaled x${upscale})` : ''}, with its audio copied`
      : `no face restored in any of the ${frames} frames (see the other notes): the video is re-encoded unchanged${upscale > 1 ? ` (upscaled x${upscale})` : ''}, with its audio copied`);
  }
  const shown = [...notices.values()].map(({ text, frames: k }) => (k > 1 ? `${text} (in ${k} of ${frames} frames)` : text));
  return {
    input, output, frames, fps: info.fps, duration: frames / info.fps, width, height,
    faceFrames, framesWithFaces, tracks: tracker.trackCount, audio: info.audio, notices: shown,
    seconds: (performance.now() - started) / 1000,
  };
}
