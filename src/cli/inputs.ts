/**
 * The image arguments of `restore`, `detect` and `degrade`: files, folders (their image files, not
 * recursive, in name order) and glob patterns that the shell did not expand (quoted, or no file
 * matched): `*`, `?` and `[...]` character classes (`[abc]`, `[a-z]`, `[!a]`) in any path segment,
 * matched with picomatch. A name starting with a dot is only matched by a pattern that starts
 * with one. An existing file is always taken literally, whatever characters its name holds.
 */
import fs from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { IMAGE_EXTENSIONS } from '../degrade/args.js';

/** One argument's file, or an argument that stands for no file (`error` says why). */
export interface InputFile {
  input: string;
  error?: string;
}

const WILDCARD = /[*?[]/;

/** True when `s` holds a pattern character (`*`, `?`, `[`). */
export const hasWildcard = (s: string): boolean => WILDCARD.test(s);

export const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Files matching `pattern` (a pattern in any segment), sorted by name. */
export function expandGlob(pattern: string): string[] {
  const parts = pattern.split(/[/\\]/);
  let bases: string[] = [parts[0] === '' ? path.sep : ''];
  let start = parts[0] === '' ? 1 : 0;
  if (/^[A-Za-z]:$/.test(parts[0] ?? '')) {
    bases = [parts[0]! + path.sep];
    start = 1;
  }
  for (let k = start; k < parts.length; k++) {
    const part = parts[k]!;
    if (part === '') continue;
    const last = k === parts.length - 1;
    if (!hasWildcard(part)) {
      bases = bases.map((b) => (b === '' ? part : path.join(b, part)));
      continue;
    }
    const matches = picomatch(part, { dot: part.startsWith('.'), nobrace: true, noextglob: true });
    const next: string[] = [];
    for (const base of bases) {
      let names: fs.Dirent[];
      try {
        names = fs.readdirSync(base === '' ? '.' : base, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const d of names) {
        if (!matches(d.name)) continue;
        const p = base === '' ? d.name : path.join(base, d.name);
        if (!last && !isDirectory(p)) continue;
        next.push(p);
      }
    }
    bases = next;
  }
  return bases.filter(isFile).sort(byName);
}

/** The image files of a folder (not recursive), sorted by name. */
export function folderImages(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((d) => IMAGE_EXTENSIONS.has(path.extname(d.name).toLowerCase()) && isFile(path.join(dir, d.name)))
    .map((d) => path.join(dir, d.name))
    .sort(byName);
}

/**
 * Each argument to the files it stands for, in argument order, each file once; an argument that
 * stands for none becomes an entry with an `error`.
 */
export function expandInputs(args: readonly string[]): InputFile[] {
  const entries: InputFile[] = [];
  const seen = new Set<string>();
  const add = (file: string) => {
    const key = path.resolve(file);
    if (seen.has(key)) return;
    seen.add(key);
    entries.push({ input: file });
  };
  for (const arg of args) {
    if (fs.existsSync(arg)) {
      if (isDirectory(arg)) {
        const files = folderImages(arg);
        if (files.length === 0) entries.push({ input: arg, error: `folder holds no image files (${[...IMAGE_EXTENSIONS].join(', ')})` });
        for (const f of files) add(f);
      } else {
        add(arg);
      }
    } else if (hasWildcard(arg)) {
      const files = expandGlob(arg);
      if (files.length === 0) entries.push({ input: arg, error: 'no files match this pattern' });
      for (const f of files) add(f);
    } else {
      entries.push({ input: arg, error: 'file does not exist' });
    }
  }
  return entries;
}
export type InputItem = InputFile;
