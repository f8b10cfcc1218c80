/**
 * The progress of one video on stderr, in `osdface restore`'s style: on a terminal a redrawn bar
 * `[####....] frames done/total  fps  ETA  name`; otherwise a line at most every 5 seconds and
 * one at the end.
 */
import { formatDuration } from '../cli/restore_progress.js';

const PREFIX = 'osdface restore: ';

export class VideoProgress {
  private readonly tty: boolean;
  private readonly began = performance.now();
  private lastDraw = 0;
  private lastLine = 0;
  private done = 0;
  private total = 0;

  constructor(private readonly name: string, tty = process.stderr.isTTY === true) {
    this.tty = tty;
  }

  /** The counts and rates as text: `120/480 frames  1.25 fps  ETA 4 min 48 s`. */
  text(): string {
    const secs = (performance.now() - this.began) / 1000;
    const fps = secs > 0 ? this.done / secs : 0;
    const left = Math.max(0, this.total - this.done);
    const eta = fps > 0 && this.done > 0 ? `  ETA ${formatDuration(left / fps)}` : '';
    return `${this.done}/${this.total} frames  ${fps >= 10 ? fps.toFixed(1) : fps.toFixed(2)} fps${eta}`;
  }

  update(done: number, total: number): void {
    this.done = done;
    this.total = total;
    const now = performance.now();
    if (this.tty) {
      if (now - this.lastDraw < 100 && done < total) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.min(width, Math.round((width * done) / Math.max(1, total)));
      process.stderr.write(`\r\x1b[K${PREFIX}[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.text()}  ${this.name}`);
    } else if (now - this.lastLine >= 5000) {
      this.lastLine = now;
      process.stderr.write(`${PREFIX}${this.name}: ${this.text()}\n`);
    }
  }

  /** Clears the bar (a terminal) before the result line. */
  end(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}
