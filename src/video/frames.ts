/**
 * Decoding a video into raw RGB frames through a pipe: ffmpeg writes rawvideo rgb24 to its
 * stdout and `frames()` yields one frame at a time. Reading is pulled by the consumer, so ffmpeg
 * blocks on the full pipe while a frame is being restored: at most a pipe's worth of frames is
 * ever held, whatever the video's length.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { toolPath } from './ffmpeg_path.js';
import { ffmpegReason, VideoError } from './probe.js';
import { OWN_GROUP, trackChild } from './children.js';

export interface DecodeOptions {
  /** Seconds into the video to start at. */
  start?: number;
  /** Seconds to decode from there. */
  duration?: number;
  /** Which video stream (ffmpeg's `0:v:<k>`; default 0). */
  stream?: number;
}

/** The last 64 kB of a stream, as text. */
export function tail(stream: Readable, limit = 65536): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (s: string) => {
    text = (text + s).slice(-limit);
  });
  return () => text;
}

export class FrameReader {
  private readonly proc: ChildProcessByStdio<null, Readable, Readable>;
  private readonly stderr: () => string;
  private readonly exited: Promise<number | null>;
  readonly frameBytes: number;

  constructor(readonly file: string, readonly width: number, readonly height: number, opts: DecodeOptions = {}) {
    this.frameBytes = width * height * 3;
    const args = ['-hide_banner', '-nostdin', '-v', 'error'];
    if (opts.start !== undefined && opts.start > 0) args.push('-ss', String(opts.start));
    if (opts.duration !== undefined) args.push('-t', String(opts.duration));
    // passthrough: every decoded frame once, none duplicated or dropped
    args.push('-i', file, '-map', `0:v:${opts.stream ?? 0}`, '-vsync', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    this.proc = spawn(toolPath('ffmpeg').path, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: OWN_GROUP });
    trackChild(this.proc);
    this.stderr = tail(this.proc.stderr);
    this.exited = new Promise((resolve, reject) => {
      this.proc.on('error', reject);
      this.proc.on('close', (code) => resolve(code));
    });
    this.exited.catch(() => undefined);
  }

  /** The frames, in order, each a fresh buffer of width x height x 3 bytes. */
  async *frames(): AsyncGenerator<Buffer> {
    const size = this.frameBytes;
    let buf = Buffer.allocUnsafe(size);
    let filled = 0;
    for await (const chunk of this.proc.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(size - filled, chunk.length - off);
        chunk.copy(buf, filled, off, off + n);
        filled += n;
        off += n;
        if (filled === size) {
          yield buf;
          buf = Buffer.allocUnsafe(size);
          filled = 0;
        }
      }
    }
    let code: number | null;
    try {
      code = await this.exited;
    } catch (e) {
      throw new Error(`cannot run ffmpeg (${toolPath('ffmpeg').path}): ${e instanceof Error ? e.message : String(e)}`);
    }
    if (code !== 0) throw new VideoError(this.file, `decoding failed: ${ffmpegReason(this.stderr(), this.file)} (the file is damaged or truncated)`);
    if (filled > 0) throw new VideoError(this.file, `decoding failed: the last frame is incomplete (${filled} of ${size} bytes)`);
  }

  /** Stops ffmpeg (after an error or an interruption) and waits for it. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    this.proc.stdout.destroy();
    await this.exited.catch(() => undefined);
  }
}
