/**
 * Training data: HQ face images decoded once, then per sample a seeded augmentation (flip, small
 * scale/shift, colour jitter) and the degradation recipe producing its LQ partner. Every random
 * choice comes from a generator keyed by (seed, step, index), so a resumed run sees the same batches.
 */
import path from 'node:path';
import sharp from 'sharp';
import { decodeImage, type RgbImage } from '../image/io.js';
import { Random } from '../degrade/random.js';
import { degrade, PRESETS, type PresetName } from '../degrade/recipe.js';
import { IMAGE_EXTENSIONS, listImages } from '../degrade/args.js';
import { type FloatTensor, floatTensor } from '../tensor.js';
import { OnnxFilter2D } from '../degrade/filter_onnx.js';

export interface AugmentConfig {
  flip: boolean;
  scale: number;
  shift: number;
  colorJitter: number;
}

export interface Batch {
  lq: FloatTensor;
  hq: FloatTensor;
}

/** Room around the face for scale/shift augmentation, as a fraction of the training size. */
const MARGIN = 1.25;

async function resizeSquare(img: RgbImage, side: number): Promise<RgbImage> {
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(side, side, { fit: 'cover', kernel: 'lanczos3' }).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
}

function writePlanar(img: RgbImage, out: Float32Array, offset: number): void {
  const n = img.width * img.height;
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[offset + c * n + i] = img.data[i * 3 + c]! / 255;
}

export class FaceDataset {
  private constructor(readonly files: string[], private readonly images: RgbImage[], readonly size: number) {}

  /**
   * Decodes up to `limit` images of `dir` at `size` * 1.25 (sorted by name); with `holdout`, the last
   * `holdout` images are left out (`part: 'train'`) or are the only ones (`part: 'holdout'`).
   */
  static async load(dir: string, size: number, limit = Infinity, split?: { holdout: number; part: 'train' | 'holdout' }): Promise<FaceDataset> {
    let files = listImages(dir);
    if (split && split.holdout > 0) {
      if (files.length <= split.holdout) throw new Error(`${dir}: ${files.length} images, too few to hold out ${split.holdout} for validation`);
      files = split.part === 'train' ? files.slice(0, files.length - split.holdout) : files.slice(files.length - split.holdout);
    }
    files = files.slice(0, limit);
    if (files.length === 0) throw new Error(`${dir}: no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
    const images = [];
    for (const f of files) images.push(await resizeSquare(await decodeImage(f), Math.round(size * MARGIN)));
    return new FaceDataset(files, images, size);
  }

  get length(): number {
    return this.images.length;
  }

  private async augmented(i: number, rng: Random, aug: AugmentConfig): Promise<RgbImage> {
    const base = this.images[i]!;
    const s = this.size;
    const crop = Math.min(base.width, Math.round(s * (1 + rng.uniform(-aug.scale, aug.scale))));
    const centre = (base.width - crop) / 2;
    const clampOffset = (v: number) => Math.max(0, Math.min(base.width - crop, Math.round(v)));
    const left = clampOffset(centre + rng.uniform(-aug.shift, aug.shift) * s);
    const top = clampOffset(centre + rng.uniform(-aug.shift, aug.shift) * s);
    let pipeline = sharp(base.data, { raw: { width: base.width, height: base.height, channels: 3 } })
      .extract({ left, top, width: crop, height: crop }).resize(s, s, { kernel: 'cubic' });
    if (aug.flip && rng.random() < 0.5) pipeline = pipeline.flop();
    const { data } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    const out = new Uint8Array(data);
    if (aug.colorJitter > 0) {
      const brightness = 1 + rng.uniform(-aug.colorJitter, aug.colorJitter);
      const contrast = 1 + rng.uniform(-aug.colorJitter, aug.colorJitter);
      let mean = 0;
      for (const v of out) mean += v;
      mean /= out.length;
      for (let k = 0; k < out.length; k++) out[k] = Math.max(0, Math.min(255, Math.round(((out[k]! - mean) * contrast + mean) * brightness)));
    }
    return { data: out, width: s, height: s, channels: 3 };
  }

  /** The blur of the degradation on ONNX Runtime (the plain version is over a second per 512 face). */
  private readonly blur = new OnnxFilter2D(1);

  async dispose(): Promise<void> {
    await this.blur.dispose();
  }

  /** A training batch for `key` (e.g. `<seed>:<step>`): images drawn with replacement. */
  async batch(key: string, batch: number, aug: AugmentConfig, degradation: PresetName): Promise<Batch> {
    const s = this.size;
    const lq = floatTensor([batch, 3, s, s]);
    const hq = floatTensor([batch, 3, s, s]);
    for (let b = 0; b < batch; b++) {
      const rng = new Random(`${key}:${b}`);
      const hqImg = await this.augmented(rng.int(this.length), rng, aug);
      const { image } = await degrade(hqImg, PRESETS[degradation], { key: `${key}:${b}:degrade`, filter2D: this.blur.apply });
      writePlanar(hqImg, hq.data, b * 3 * s * s);
      writePlanar(image, lq.data, b * 3 * s * s);
    }
    return { lq, hq };
  }

  /** The fixed validation set: every image's centre crop (as training sees it unaugmented), degraded with `seed`. */
  async fixed(seed: number, degradation: PresetName): Promise<Batch> {
    const s = this.size;
    const lq = floatTensor([this.length, 3, s, s]);
    const hq = floatTensor([this.length, 3, s, s]);
    for (let b = 0; b < this.length; b++) {
      const base = this.images[b]!;
      const offset = Math.floor((base.width - s) / 2);
      const { data } = await sharp(base.data, { raw: { width: base.width, height: base.height, channels: 3 } })
        .extract({ left: offset, top: offset, width: s, height: s }).raw().toBuffer({ resolveWithObject: true });
      const img: RgbImage = { data: new Uint8Array(data), width: s, height: s, channels: 3 };
      const { image } = await degrade(img, PRESETS[degradation], { key: `${seed}:${path.basename(this.files[b]!)}`, filter2D: this.blur.apply });
      writePlanar(img, hq.data, b * 3 * s * s);
      writePlanar(image, lq.data, b * 3 * s * s);
    }
    return { lq, hq };
  }
}
