/**
 * The built CLI as the benches run it: `osdface(args)` and the means of `osdface eval --json`.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'dist/src/cli/main.js');
const niqeParams = path.join(root, '../shared/weights/niqe_pris_params.npz');

/** Runs `osdface <args>` (dist/src/cli/main.js) and returns its stdout; a failure throws with its stderr. */
export function osdface(args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`osdface ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** The mean of each of `metrics` over the images of `pred` against `gt` (`osdface eval`; an infinite PSNR is Infinity). */
export function evalMeans<M extends string>(pred: string, gt: string, metrics: readonly M[]): Record<M, number> {
  const niqe = metrics.includes('niqe' as M) ? ['--niqe-params', niqeParams] : [];
  const mean = JSON.parse(osdface(['eval', '--pred', pred, '--gt', gt, '--metrics', metrics.join(','), ...niqe, '--json'])).mean as Record<string, number | string>;
  const num = (v: number | string | undefined) => (typeof v === 'number' ? v : Number(String(v).replace('inf', 'Infinity')));
  return Object.fromEntries(metrics.map((m) => [m, num(mean[m])])) as Record<M, number>;
}
