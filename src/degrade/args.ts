/**
 * Helpers of the `degrade` and `eval` commands: the shared flag parser (re-exported from
 * ../cli/args.ts), image listing, atomic text writes.
 */

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export { ArgumentError as UsageError, parseFlags, type FlagSpec, type Flags } from '../cli/args.js';

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

/** Writes `data` to `<file>.tmp-<pid>` and renames it over `file` (creating the folder). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, data);
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
