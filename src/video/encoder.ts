/**
 * Encoding restored frames through a pipe: raw rgb24 frames are written to ffmpeg's stdin, which
 * encodes them with libx264 (yuv420p, `crf`, `preset`) at the input's frame rate and copies the
 * input's audio streams unchanged (`-map 1:a? -c:a copy`, the same part of the clip as the
 * frames). `write` waits for the pipe to drain when it is full, so frames never pile up in memory.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { toolPath } from './ffmpeg_path.js';
import { VideoError } from './probe.js';
import { OWN_GROUP, trackChild } from './children.js';
import { tail } from './frames.js';

export const X264_PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow'] as const;
export type X264Preset = (typeof X264_PRESETS)[number];

export interface EncoderOptions {
  /** The frames' size. */
  width: number;
  height: number;
  /** Frame rate as a rational string ('25/1'). */
  fps: string;
  /** The file whose audio is copied (nothing when it has no audio). */
  audioFrom: string;
  /** The part of `audioFrom` the frames come from (seconds). */
  start?: number;
  duration?: number;
  /** x264 constant rate factor, 0-51 (lower is better quality). */
  crf: number;
  preset: X264Preset;
  /** ffmpeg muxer name: mp4, mov, matroska, avi. */
  muxer: string;
  /** The file written (a temporary name: the caller renames it). */
  output: string;
  /** The audio codecs of `audioFrom`, for the message when the container refuses one. */
  audioCodecs: string[];
}

export class FrameWriter {
  private readonly proc: ChildProcessByStdio<Writable, null, Readable>;
  private readonly stderr: () => string;
  private readonly exited: Promise<number | null>;
  private failure: Error | null = null;
  readonly frameBytes: number;

  constructor(private readonly opts: EncoderOptions) {
    this.frameBytes = opts.width * opts.height * 3;
    const args = ['-hide_banner', '-nostdin', '-v', 'error', '-y',
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${opts.width}x${opts.height}`, '-framerate', opts.fps, '-i', 'pipe:0'];
    if (opts.start !== undefined && opts.start > 0) args.push('-ss', String(opts.start));
    if (opts.duration !== undefined) args.push('-t', String(opts.duration));
    args.push('-i', opts.audioFrom, '-map', '0:v:0', '-map', '1:a?', '-map_metadata', '1');
    // H.264 in yuv420p needs even sides: an odd one gets one more row / column, repeated from the edge.
    const right = opts.width % 2;
    const bottom = opts.height % 2;
    if (right + bottom > 0) args.push('-vf', `pad=${opts.width + right}:${opts.height + bottom}:0:0,fillborders=mode=smear:right=${right}:bottom=${bottom}`);
    args.push('-c:v', 'libx264', '-preset', opts.preset, '-crf', String(opts.crf), '-pix_fmt', 'yuv420p', '-c:a', 'copy');
    if (opts.muxer === 'mp4' || opts.muxer === 'mov') args.push('-movflags', '+faststart');
    args.push('-f', opts.muxer, opts.output);
    this.proc = spawn(toolPath('ffmpeg').path, args, { stdio: ['pipe', 'ignore', 'pipe'], detached: OWN_GROUP });
    trackChild(this.proc);
    this.stderr = tail(this.proc.stderr);
    // A write after ffmpeg died fails with EPIPE; the reason is in its stderr, reported by finish/write.
    this.proc.stdin.on('error', (e) => { this.failure ??= e; });
    this.exited = new Promise((resolve, reject) => {
      this.proc.on('error', reject);
      this.proc.on('close', (code) => resolve(code));
    });
    this.exited.catch(() => undefined);
  }

  /** Writes one frame (width x height x 3 bytes; not to be changed afterwards); waits while the pipe is full. */
  async write(frame: Uint8Array): Promise<void> {
    if (frame.length !== this.frameBytes) throw new Error(`FrameWriter: a frame of ${frame.length} bytes, expected ${this.frameBytes}`);
    if (this.failure || this.proc.exitCode !== null) throw await this.error();
    if (this.proc.stdin.write(frame)) return;
    await new Promise<void>((resolve, reject) => {
      const stdin = this.proc.stdin;
      const closed = () => done(new Error('ffmpeg exited'));
      const done = (e?: unknown) => {
        stdin.off('drain', done);
        stdin.off('error', done);
        this.proc.off('close', closed);
        if (e === undefined) resolve();
        else reject(e);
      };
      stdin.on('drain', done);
      stdin.on('error', done);
      this.proc.on('close', closed);
    }).catch(async () => { throw await this.error(); });
  }

  /** Closes the input and waits for ffmpeg to write the file. */
  async finish(): Promise<void> {
    this.proc.stdin.end();
    let code: number | null;
    try {
      code = await this.exited;
    } catch (e) {
      throw new Error(`cannot run ffmpeg (${toolPath('ffmpeg').path}): ${e instanceof Error ? e.message : String(e)}`);
    }
    if (code !== 0) throw await this.error();
  }

  /** Stops ffmpeg (after an error or an interruption) and waits for it. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.exited.catch(() => undefined);
  }

  /** What went wrong, once ffmpeg has exited: its own message, explained where we can. */
  private async error(): Promise<Error> {
    await this.exited.catch(() => undefined);
    const text = this.stderr();
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    const audioRefused = lines.some((l) => /codec not currently supported in container|not supported in|could not find tag for codec|experimental/i.test(l) && /audio|stream #?\d*:?1|tag for codec/i.test(l));
    if (audioRefused && this.opts.audioCodecs.length > 0) {
      return new VideoError(this.opts.audioFrom, `the ${this.opts.muxer} container of the output cannot hold the input's ${this.opts.audioCodecs.join(', ')} audio copied unchanged (ffmpeg: ${lines.find((l) => /codec|experimental/i.test(l))}); remux the input into .mkv first (ffmpeg -i <input> -c copy <input>.mkv), which takes any audio codec`);
    }
    const why = lines.length > 0 ? lines.slice(-3).join('; ') : (this.failure?.message ?? `exit code ${String(this.proc.exitCode)}`);
    return new Error(`encoding failed (ffmpeg): ${why}`);
  }
}
