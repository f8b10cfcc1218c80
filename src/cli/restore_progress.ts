/**
 * What `osdface restore` records per input (Entry) and its progress on stderr: a redrawn bar on a
 * terminal, one line per input otherwise, in input order, counted over every input given.
 */
import path from 'node:path';

export type EntryStatus = 'ok' | 'unchanged' | 'failed' | 'skipped';

export interface Entry {
  input: string;
  output: string | null;
  /** With --compare: the side-by-side image. */
  compare?: string;
  /** With --save-faces: the crops written (before and after, per restored face). */
  savedFaces?: string[];
  /**
   * ok: restored; unchanged: a photo written without any face restored (none found, or every
   * face left as it is: see notices); failed; skipped (--skip-existing).
   */
  status?: EntryStatus;
  seconds?: number;
  /** Why it failed. */
  error?: string;
  /** Why it was skipped. */
  reason?: string;
  seed?: number;
  /** Faces restored (1 for an aligned crop). */
  faces?: number;
  /** Faces found (photos only). */
  detected?: number;
  notices?: string[];
}

const PREFIX = 'osdface restore: ';

export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function failureLine(e: Entry): string {
  return `${e.input}: ${e.error}`;
}

export function formatDuration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** The message of `e` without a leading `<file>: ` (the entry already names the file). */
export function reason(e: unknown, file: string): string {
  const msg = e instanceof Error ? e.message : String(e);
  for (const prefix of [`${file}: `, `${path.resolve(file)}: `]) if (msg.startsWith(prefix)) return msg.slice(prefix.length);
  return msg;
}

/** `k of n faces restored`, as progress lines and the summary show it. */
export function facesRestored(e: Entry): string {
  return `${e.faces ?? 0} of ${plural(e.detected ?? 0, 'face')} restored`;
}

export class Progress {
  private done = 0;
  private restored = 0;
  private restoreSeconds = 0;
  private readonly tty: boolean;

  constructor(private readonly total: number, private toRestore: number) {
    this.tty = process.stderr.isTTY === true;
  }

  /** Records a finished entry and shows it. */
  report(e: Entry): void {
    this.done++;
    if (e.status === 'ok' || e.status === 'unchanged') {
      this.restored++;
      this.restoreSeconds += e.seconds ?? 0;
    }
    const counter = `[${this.done}/${this.total}]`;
    const notices = (e.notices ?? []).map((n) => `note: ${e.input}: ${n}`);
    if (this.tty) {
      if (e.status === 'failed') process.stderr.write(`\r\x1b[K${PREFIX}${counter} failed  ${failureLine(e)}\n`);
      for (const n of notices) process.stderr.write(`\r\x1b[K${PREFIX}${n}\n`);
      this.draw();
      return;
    }
    if (e.status === 'ok' || e.status === 'unchanged') {
      const faces = e.detected !== undefined ? `, ${facesRestored(e)}` : '';
      process.stderr.write(`${PREFIX}${counter} ${e.status.padEnd(9)} ${e.input} -> ${e.output} (${e.seconds!.toFixed(2)} s${faces})\n`);
    } else if (e.status === 'skipped') process.stderr.write(`${PREFIX}${counter} skipped   ${e.input} (${e.reason})\n`);
    else process.stderr.write(`${PREFIX}${counter} failed    ${failureLine(e)}\n`);
    for (const n of notices) process.stderr.write(`${PREFIX}${n}\n`);
  }

  /** The images left to restore changed (an image was dropped before the network, e.g. unreadable). */
  dropped(): void {
    this.toRestore--;
  }

  private draw(): void {
    const width = 24;
    const filled = Math.round((width * this.done) / Math.max(1, this.total));
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    let text = `\r\x1b[K${PREFIX}[${bar}] ${this.done}/${this.total}`;
    if (this.restored > 0) {
      const per = this.restoreSeconds / this.restored;
      const left = Math.max(0, this.toRestore - this.restored);
      text += `  ${per.toFixed(2)} s/image  ETA ${formatDuration(per * left)}`;
    }
    process.stderr.write(text);
  }

  start(): void {
    if (this.tty) this.draw();
  }

  end(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
