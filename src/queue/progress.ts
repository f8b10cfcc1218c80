/**
 * The progress of a queue for `collect --wait`, on stderr: a redrawn bar on a terminal, a line
 * when the counts change (at most every 5 s) otherwise. done / failed / pending, images/s over
 * this run, ETA of the pending images at that rate.
 */
export class QueueProgress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = performance.now();
  private first: number | null = null;
  private lastLine = '';
  private lastAt = 0;

  update(done: number, failed: number, pending: number): void {
    this.first ??= done;
    const seconds = (performance.now() - this.t0) / 1000;
    const rate = seconds > 0 ? (done - this.first) / seconds : 0;
    const total = done + failed + pending;
    const width = 24;
    const filled = Math.round((width * (done + failed)) / Math.max(1, total));
    const eta = pending === 0 ? '0 s' : rate > 0 ? formatDuration(pending / rate) : '?';
    const text = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done} done, ${failed} failed, ${pending} pending  ${rate.toFixed(2)} images/s  ETA ${eta}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[K${text}`);
      return;
    }
    const counts = `${done}/${failed}/${pending}`;
    const now = performance.now();
    if (counts !== this.lastLine && (now - this.lastAt > 5000 || pending === 0 || this.lastAt === 0)) {
      process.stderr.write(`${text}\n`);
      this.lastLine = counts;
      this.lastAt = now;
    }
  }

  end(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

export function formatDuration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
