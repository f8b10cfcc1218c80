/**
 * A small flag parser for the `degrade` and `eval` commands (no dependencies): `--flag value`,
 * `--flag=value`, short aliases, boolean flags, `--` ends the flags. Problems throw UsageError.
 */

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  kind: 'string' | 'int' | 'bool';
  short?: string;
  choices?: readonly string[];
}

export type Flags = Map<string, string | number | true>;

export function parseFlags(argv: readonly string[], spec: Record<string, FlagSpec>): { flags: Flags; positionals: string[] } {
  const flags: Flags = new Map();
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([name, s]) => [s.short!, name]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      if (!(name in spec)) throw new UsageError(`unknown option --${name}`);
    } else {
      name = byShort.get(arg.slice(1));
      if (name === undefined) throw new UsageError(`unknown option ${arg}`);
    }
    const s = spec[name]!;
    if (flags.has(name)) throw new UsageError(`--${name} is given twice`);
    if (s.kind === 'bool') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      flags.set(name, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next !== '-' && !/^-\d/.test(next))) throw new UsageError(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (s.kind === 'int') {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new UsageError(`--${name} must be a whole number >= 0, got '${value}'`);
      flags.set(name, Number(value));
    } else {
      if (s.choices && !s.choices.includes(value)) throw new UsageError(`--${name} must be one of ${s.choices.join(', ')}, got '${value}'`);
      flags.set(name, value);
    }
  }
  return { flags, positionals };
}

export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff']);

/** The image files of a folder (by extension, not recursive), sorted by name. */
export function listImages(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((d) => IMAGE_EXTENSIONS.has(path.extname(d.name).toLowerCase()) && (d.isFile() || d.isSymbolicLink()))
    .map((d) => d.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => path.join(dir, n));
}

/** A file name without its folder and last extension: `a/b/face.01.png` -> `face.01`. */
export function baseName(file: string): string {
  const b = path.basename(file);
  const ext = path.extname(b);
  return ext ? b.slice(0, -ext.length) : b;
}

/** Writes `text` to `<file>.tmp-<pid>` and renames it over `file` (creating the folder). */
export function writeTextAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** True when the module at `metaUrl` is the script node was started with. */
export function isMainModule(metaUrl: string): boolean {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(metaUrl);
  } catch {
    return false;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
