/**
 * A contact sheet a person can judge: one row per face, input | restored, each downscaled to at
 * most 256 px, with the default model (or --model). It restores into a temporary folder and writes
 * only the sheet (the face images themselves are never committed).
 *
 *   node dist/bench/sheet.js -o docs/default-model-sheet.jpg [--model DIR] [--size 192] <folder | file>...
 *
 * Inputs are aligned face crops (faces-hq/test degraded with `osdface degrade`, real-lq crops).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { OSDFace } from '../src/osdface.js';
import { expandInputs } from '../src/cli/inputs.js';
import { decodeImage } from '../src/image/io.js';

async function main(argv: string[]): Promise<number> {
  const get = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
  const out = get('-o');
  const model = get('--model');
  const side = Number(get('--size') ?? 192);
  const inputs = argv.filter((a, i) => !a.startsWith('-') && !['-o', '--model', '--size'].includes(argv[i - 1] ?? ''));
  if (!out || inputs.length === 0 || !(side > 0 && side <= 256)) {
    process.stderr.write('usage: node dist/bench/sheet.js -o <sheet.jpg|png> [--model DIR] [--size PX (<= 256)] <folder | file>...\n');
    return 2;
  }
  const files = expandInputs(inputs).filter((f) => f.error === undefined).map((f) => f.input);
  const osd = await OSDFace.load(model, { threads: os.cpus().length });
  const rows: Buffer[] = [];
  try {
    for (const [i, file] of files.entries()) {
      process.stderr.write(`sheet: [${i + 1}/${files.length}] ${path.basename(file)}\n`);
      const input = await decodeImage(file);
      const restored = await osd.restore(input);
      const tile = (img: { data: Uint8Array; width: number; height: number }) =>
        sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).resize(side, side, { fit: 'contain', background: '#ffffff', kernel: 'lanczos3' }).png().toBuffer();
      const [a, b] = await Promise.all([tile(input), tile(restored)]);
      rows.push(await sharp({ create: { width: 2 * side + 4, height: side, channels: 3, background: '#ffffff' } })
        .composite([{ input: a, left: 0, top: 0 }, { input: b, left: side + 4, top: 0 }]).png().toBuffer());
    }
  } finally {
    await osd.dispose();
  }
  // Two columns of (input | restored) pairs.
  const cols = 2;
  const width = cols * (2 * side + 4) + (cols - 1) * 12;
  const height = Math.ceil(rows.length / cols) * (side + 4);
  const sheet = sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(rows.map((r, i) => ({ input: r, left: (i % cols) * (2 * side + 16), top: Math.floor(i / cols) * (side + 4) })));
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  await (out.endsWith('.png') ? sheet.png() : sheet.jpeg({ quality: 88 })).toFile(out);
  process.stderr.write(`sheet: ${rows.length} faces -> ${out}\n`);
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
