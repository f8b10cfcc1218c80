/**
 * Command-line inputs: files, folders (their image files, not recursive, in name order) and
 * `*` / `?` patterns expanded here when the shell did not. Shared by `osdface restore` and
 * `osdface queue submit`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { IMAGE_EXTENSIONS } from '../degrade/args.js';

const hasWildcard = (s: string) => /[*?]/.test(s);

/** A path segment pattern with * (any run of characters) and ? (one character) to a RegExp. */
function segmentRegExp(pattern: string): RegExp {
  let re = '';
  for (const ch of pattern) re += ch === '*' ? '[^/\\\\]*' : ch === '?' ? '[^/\\\\]' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${re}$`);
}

/** Files matching `pattern` (* and ? in any segment; a leading dot must be matched literally), sorted. */
function expandGlob(pattern: string): string[] {
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
    const re = segmentRegExp(part);
    const next: string[] = [];
    for (const base of bases) {
      let names: fs.Dirent[];
      try {
        names = fs.readdirSync(base === '' ? '.' : base, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const d of names) {
        if (d.name.startsWith('.') && !part.startsWith('.')) continue;
        if (!re.test(d.name)) continue;
        const p = base === '' ? d.name : path.join(base, d.name);
        if (!last && !isDirectory(p)) continue;
        next.push(p);
      }
    }
    bases = next;
  }
  return bases.filter(isFile).sort(byName);
}

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

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** One input file, or an argument that stands for none (with the reason in `error`). */
export interface InputItem {
  input: string;
  error?: string;
}

/** Each argument to the files it stands for (each file once); an argument that stands for none becomes an item with an error. */
export function expandInputs(args: readonly string[]): InputItem[] {
  const items: InputItem[] = [];
  const seen = new Set<string>();
  const add = (file: string) => {
    const key = path.resolve(file);
    if (seen.has(key)) return;
    seen.add(key);
    items.push({ input: file });
  };
  for (const arg of args) {
    if (fs.existsSync(arg)) {
      if (isDirectory(arg)) {
        const files = fs.readdirSync(arg, { withFileTypes: true })
          .filter((d) => IMAGE_EXTENSIONS.has(path.extname(d.name).toLowerCase()) && isFile(path.join(arg, d.name)))
          .map((d) => d.name)
          .sort(byName);
        if (files.length === 0) items.push({ input: arg, error: `folder holds no image files (${[...IMAGE_EXTENSIONS].join(', ')})` });
        for (const f of files) add(path.join(arg, f));
      } else {
        add(arg);
      }
    } else if (hasWildcard(arg)) {
      const files = expandGlob(arg);
      if (files.length === 0) items.push({ input: arg, error: 'no files match this pattern' });
      for (const f of files) add(f);
    } else {
      items.push({ input: arg, error: 'file does not exist' });
    }
  }
  return items;
}
