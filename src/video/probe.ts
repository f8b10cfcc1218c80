/**
 * What osdface needs to know about a video before restoring it, read with ffprobe: the size of
 * its frames as decoded (rotation applied), the frame rate, the frame count and duration, and its
 * audio streams. A file ffprobe cannot read, or one without a video stream, is a VideoError that
 * names the file and says what is wrong.
 */
import { execFile } from 'node:child_process';
import { toolPath } from './ffmpeg_path.js';

/** A video that cannot be used; the message starts with the file. */
export class VideoError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'VideoError';
  }
}

export interface VideoInfo {
  file: string;
  /** Container format as ffprobe names it (e.g. 'mov,mp4,m4a,3gp,3g2,mj2'). */
  container: string;
  /** Frame size as decoded (display rotation applied). */
  width: number;
  height: number;
  /** The video codec (e.g. 'h264'). */
  codec: string;
  /** Which of the file's video streams is the video (0 unless a cover picture comes first): ffmpeg's `0:v:<k>`. */
  videoStream: number;
  /** Frames per second as a rational string (e.g. '25/1', '30000/1001'), and its value. */
  fpsRational: string;
  fps: number;
  /** The video stream's frame count when the container records it, else an estimate from duration x fps. */
  frames: number;
  /** True when `frames` is the container's own count. */
  framesExact: boolean;
  /** Seconds (the video stream's, else the container's). */
  duration: number;
  /** Codec names of the audio streams (empty when there is none). */
  audio: string[];
}

interface ProbeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  nb_frames?: string;
  duration?: string;
  tags?: Record<string, string>;
  side_data_list?: { rotation?: number }[];
  disposition?: { attached_pic?: number };
}

interface ProbeOutput {
  streams?: ProbeStream[];
  format?: { format_name?: string; duration?: string };
}

/** `num/den` -> [string, value], or null when it is not a positive rate. */
function rate(s: string | undefined): [string, number] | null {
  if (!s) return null;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) return null;
  const v = Number(m[1]) / Number(m[2]);
  return Number.isFinite(v) && v > 0 && v < 1000 ? [s, v] : null;
}

/** The last meaningful line of ffmpeg / ffprobe stderr, with the file name taken out. */
export function ffmpegReason(stderr: string, file: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines[lines.length - 1] ?? 'no message';
  return last.startsWith(`${file}: `) ? last.slice(file.length + 2) : last.replace(`${file}: `, '');
}

/** Reads `file` with ffprobe. */
export function probeVideo(file: string): Promise<VideoInfo> {
  const ffprobe = toolPath('ffprobe').path;
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file];
  return new Promise((resolve, reject) => {
    execFile(ffprobe, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && stderr === '') {
          reject(new Error(`cannot run ffprobe (${ffprobe}): ${err.message}`));
          return;
        }
        reject(new VideoError(file, `cannot read the video: ${ffmpegReason(stderr, file)} (the file is damaged, truncated or not a video)`));
        return;
      }
      let out: ProbeOutput;
      try {
        out = JSON.parse(stdout) as ProbeOutput;
      } catch {
        reject(new VideoError(file, 'cannot read the video: ffprobe gave no readable description of it'));
        return;
      }
      try {
        resolve(describe(file, out));
      } catch (e) {
        reject(e);
      }
    });
  });
}

function describe(file: string, out: ProbeOutput): VideoInfo {
  const streams = out.streams ?? [];
  const videos = streams.filter((s) => s.codec_type === 'video');
  const video = videos.find((s) => !s.disposition?.attached_pic);
  if (!video) throw new VideoError(file, 'no video stream in it (an audio file or a still picture?)');
  if (!video.width || !video.height) throw new VideoError(file, `cannot read the video: its ${video.codec_name ?? 'video'} stream has no frame size (the file is damaged or truncated)`);
  const fps = rate(video.avg_frame_rate) ?? rate(video.r_frame_rate);
  if (!fps) throw new VideoError(file, `cannot read the video: no frame rate (avg ${video.avg_frame_rate}, r ${video.r_frame_rate})`);
  const duration = Number(video.duration ?? out.format?.duration ?? NaN);
  const nb = Number(video.nb_frames ?? NaN);
  const framesExact = Number.isInteger(nb) && nb > 0;
  const frames = framesExact ? nb : Number.isFinite(duration) ? Math.round(duration * fps[1]) : 0;
  const rotation = Number(video.tags?.rotate ?? video.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? 0);
  const turned = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  return {
    file,
    container: out.format?.format_name ?? 'unknown',
    width: turned ? video.height : video.width,
    height: turned ? video.width : video.height,
    codec: video.codec_name ?? 'unknown',
    videoStream: videos.indexOf(video),
    fpsRational: fps[0],
    fps: fps[1],
    frames,
    framesExact,
    duration: Number.isFinite(duration) ? duration : frames / fps[1],
    audio: streams.filter((s) => s.codec_type === 'audio').map((s) => s.codec_name ?? 'unknown'),
  };
}
