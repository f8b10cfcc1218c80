#!/usr/bin/env node
/**
 * `osdface degrade`: synthetic low-quality faces with the GFPGAN / CodeFormer recipe (the one
 * CelebA-Test was built with), seeded, with a JSON record of every drawn parameter.
 *
 * Exit codes: 0 every image degraded; 1 some image failed (the others are written and recorded);
 * 2 usage error (nothing written).
 */

import fs from 'node:fs';
import path from 'node:path';
import { decodeImage, encodeImage, writeImageAtomic, type RgbImage } from '../image/io.js';
import {
  baseName, errorMessage, isMainModule, listImages, parseFlags, UsageError, writeFileAtomic,
} from '../degrade/args.js';
import { expandInputs } from './inputs.js';
import { reportUsageError } from './args.js';
import { resize, toBytes, toFloat, INTERPOLATIONS, type Interpolation } from '../degrade/ops.js';
import { degrade, PRESET_NAMES, PRESETS, type DegradationRecord, type PresetName } from '../degrade/recipe.js';

export const DEGRADE_USAGE = `usage: osdface degrade <file | folder | glob>... -o <out dir> --seed <N> [options]

Writes a synthetic low-quality version of each image to <out dir>/<name>.png (the GFPGAN /
CodeFormer recipe: blur, downsample, noise, JPEG, resize back) and the parameters drawn for each
image to <out dir>/degradations.json. Image <name> uses the generator key "<N>:<name>", so its
result does not depend on the other inputs or their order; same seed, same bytes.

options:
  -o, --out <dir>          output folder (created if missing)
  --seed <N>               random seed (a whole number; required)
  --preset <name>          celeba-test (default; GFPGAN's ranges: blur sigma 0.1-10, kernel 41,
                           downsample 0.8-8, noise sigma 0-20, JPEG 60-100), mild or severe
  --size <N>               first resize each input so its longer side is N (area averaging when
                           shrinking, bicubic when enlarging), e.g. 512 for 1024 FFHQ images
  --gt-out <dir>           also write the (resized) ground truth there as <name>.png
  --resize-back <mode>     final resize: the preset's (bilinear), bicubic, area, or none to keep
                           the small image
  --json                   print the record on stdout too
  -h, --help               this help
`;

const SPEC = {
  out: { kind: 'string', short: 'o' },
  seed: { kind: 'int' },
  preset: { kind: 'string', choices: PRESET_NAMES },
  size: { kind: 'int' },
  'gt-out': { kind: 'string' },
  'resize-back': { kind: 'string', choices: [...INTERPOLATIONS, 'none'] },
  json: { kind: 'bool' },
  help: { kind: 'bool', short: 'h' },
} as const;

export interface DegradeImageEntry {
  name: string;
  input: string;
  output?: string;
  gt?: string;
  /** Set when the input was resized first (--size). */
  gtResize?: { from: { width: number; height: number }; to: { width: number; height: number }; interpolation: Interpolation };
  record?: DegradationRecord;
  error?: string;
}

export interface DegradeReport {
  tool: 'osdface degrade';
  preset: PresetName;
  seed: number;
  size: number | null;
  resizeBack: string;
  config: (typeof PRESETS)[PresetName];
  images: DegradeImageEntry[];
  failed: number;
}

/** Resizes so the longer side is `size` (area when shrinking, bicubic when enlarging). */
export function resizeLonger(img: RgbImage, size: number): { image: RgbImage; interpolation: Interpolation } {
  const longer = Math.max(img.width, img.height);
  const w = Math.max(1, Math.round((img.width * size) / longer));
  const h = Math.max(1, Math.round((img.height * size) / longer));
  const interpolation: Interpolation = size < longer ? 'area' : 'bicubic';
  if (w === img.width && h === img.height) return { image: img, interpolation };
  return { image: toBytes(resize(toFloat(img), w, h, interpolation)), interpolation };
}

export async function main(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parseFlags>['flags'];
  let positionals: string[];
  try {
    ({ flags, positionals } = parseFlags(argv, SPEC));
    if (flags.has('help')) {
      process.stdout.write(DEGRADE_USAGE);
      return 0;
    }
    if (positionals.length === 0) throw new UsageError('no input images');
    if (!flags.has('out')) throw new UsageError('-o <out dir> is required');
    if (!flags.has('seed')) throw new UsageError('--seed <N> is required (same seed, same bytes)');
    if (flags.has('size') && !((flags.get('size') as number) > 0)) throw new UsageError('--size must be greater than 0');
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return reportUsageError('degrade', e.message);
  }
  const outDir = flags.get('out') as string;
  const gtDir = flags.get('gt-out') as string | undefined;
  const seed = flags.get('seed') as number;
  const presetName = (flags.get('preset') as PresetName | undefined) ?? 'celeba-test';
  const config = PRESETS[presetName];
  const size = (flags.get('size') as number | undefined) ?? null;
  const resizeBack = (flags.get('resize-back') as Interpolation | 'none' | undefined) ?? config.resizeBack;

  const inputs = expandInputs(positionals);
  const report: DegradeReport = {
    tool: 'osdface degrade', preset: presetName, seed, size, resizeBack, config, images: [], failed: 0,
  };
  const taken = new Map<string, string>();
  const log = (msg: string) => process.stderr.write(`osdface degrade: ${msg}\n`);
  fs.mkdirSync(outDir, { recursive: true });
  for (const [i, { input: file, error }] of inputs.entries()) {
    const counter = `[${i + 1}/${inputs.length}]`;
    const name = baseName(file);
    const entry: DegradeImageEntry = { name, input: file };
    report.images.push(entry);
    if (error !== undefined) {
      entry.error = error;
      log(`${counter} failed  ${file}: ${entry.error}`);
      continue;
    }
    const clash = taken.get(name);
    if (clash !== undefined) {
      entry.error = `same name as ${clash}: both would be written to ${name}.png`;
      log(`${counter} failed  ${file}: ${entry.error}`);
      continue;
    }
    taken.set(name, file);
    try {
      const decoded = await decodeImage(file);
      let gt: RgbImage = { data: decoded.data, width: decoded.width, height: decoded.height, channels: 3 };
      if (size !== null) {
        const r = resizeLonger(gt, size);
        entry.gtResize = { from: { width: gt.width, height: gt.height }, to: { width: r.image.width, height: r.image.height }, interpolation: r.interpolation };
        gt = r.image;
      }
      if (gtDir !== undefined) {
        entry.gt = path.join(gtDir, `${name}.png`);
        await writeImageAtomic(entry.gt, await encodeImage(gt, 'png'));
      }
      const t0 = performance.now();
      const { image, record } = await degrade(gt, config, { key: `${seed}:${name}`, resizeBack });
      entry.output = path.join(outDir, `${name}.png`);
      await writeImageAtomic(entry.output, await encodeImage(image, 'png'));
      entry.record = record;
      const n = record.noise;
      const noise = n === null ? 'none' : n.type === 'gaussian' ? `gaussian ${n.sigma.toFixed(2)}` : `poisson x${n.scale.toFixed(2)}`;
      log(
        `${counter} ok      ${file} -> ${entry.output} (${record.blur.kernel} blur ${record.blur.sigmaX.toFixed(2)}/${record.blur.sigmaY.toFixed(2)}, ` +
        `x1/${record.downsample.scale.toFixed(2)} ${record.downsample.interpolation}, noise ${noise}, JPEG ${record.jpeg?.quality ?? 'none'}; ` +
        `${((performance.now() - t0) / 1000).toFixed(2)} s)`,
      );
    } catch (e) {
      entry.error = errorMessage(e);
      log(`${counter} failed  ${file}: ${entry.error}`);
    }
  }
  report.failed = report.images.filter((e) => e.error !== undefined).length;
  const text = JSON.stringify(report, null, 2) + '\n';
  writeFileAtomic(path.join(outDir, 'degradations.json'), text);
  if (flags.has('json')) process.stdout.write(text);
  log(`${report.images.length - report.failed} degraded, ${report.failed} failed; record: ${path.join(outDir, 'degradations.json')}`);
  return report.failed > 0 ? 1 : 0;
}

if (isMainModule(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { process.stderr.write(`osdface degrade: ${errorMessage(e)}\n`); process.exitCode = 1; },
  );
}
