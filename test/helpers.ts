import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, from dist/test/helpers.js. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The shared fixtures and data, beside the repository (never copied into it). */
export const shared = path.resolve(repoRoot, '../shared');
export const parityA = path.join(shared, 'fixtures/parity-a');
export const fullSize = path.join(shared, 'fixtures/full-size');
