/**
 * The quality cost of int8: restores the same faces with an fp32 and an int8 model directory
 * (one model in memory at a time) and reports the PSNR of the int8 outputs against the fp32 ones
 * (8-bit RGB, 512 x 512): node dist/bench/int8_quality.js <fp32 dir> <int8 dir> <threads> <image>...
 * -> one JSON line {psnr_vs_fp32_db, psnr_vs_fp32_min_db, quality_images, psnr_per_image}.
 */
import path from 'node:path';
import { OSDFace, type RestoredImage } from '../src/osdface.js';

const [fp32Dir, int8Dir, threadsArg, ...images] = process.argv.slice(2);
const threads = Number(threadsArg ?? 2);

async function restoreAll(dir: string): Promise<RestoredImage[]> {
  const model = await OSDFace.load(dir, { threads });
  try {
    const out: RestoredImage[] = [];
    for (const f of images) {
      process.stderr.write(`  ${path.basename(dir)}: ${path.basename(f)}\n`);
      out.push(await model.restore(f, { size: 512 }));
    }
    return out;
  } finally {
    await model.dispose();
  }
}

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / a.length));
}

async function main(): Promise<void> {
  if (!fp32Dir || !int8Dir || images.length === 0) throw new Error('usage: int8_quality.js <fp32 dir> <int8 dir> <threads> <image>...');
  const ref = await restoreAll(fp32Dir);
  const q = await restoreAll(int8Dir);
  const perImage = images.map((f, i) => ({ name: path.basename(f), psnr: psnr(ref[i]!.data, q[i]!.data) }));
  const values = perImage.map((p) => p.psnr);
  process.stdout.write(JSON.stringify({
    psnr_vs_fp32_db: values.reduce((s, v) => s + v, 0) / values.length,
    psnr_vs_fp32_min_db: Math.min(...values),
    quality_images: values.length,
    psnr_per_image: perImage,
  }) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
