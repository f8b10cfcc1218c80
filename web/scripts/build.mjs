// Builds the browser app into web/dist from the compiled dist/ (run `tsc -p .` first):
// prepare web/public, vite build, precache list. `npm run build:web` type-checks, then runs this;
// the browser test and bench:web run it too, so they always use the current sources.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vite = path.join(path.dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin/vite.js');
const run = (...args) => execFileSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
run('web/scripts/prepare.mjs');
run(vite, 'build', '--config', 'web/vite.config.ts', '--logLevel', 'warn');
run('web/scripts/precache.mjs');
