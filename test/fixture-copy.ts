import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parityA } from './helpers.js';

/** A writable copy of parity-a in a temporary folder (the shared copy is read-only). */
export function copyParityA(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-fixture-'));
  fs.cpSync(parityA, dir, { recursive: true });
  for (const f of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    fs.chmodSync(path.join(f.parentPath ?? (f as unknown as { path: string }).path, f.name), f.isDirectory() ? 0o755 : 0o644);
  }
  fs.chmodSync(dir, 0o755);
  return dir;
}

export function editJson(file: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j, null, 2));
}
