#!/usr/bin/env node
/**
 * The `osdface` command: `restore` (photos or aligned face crops -> restored images), `detect`
 * (faces and landmarks), `convert` (official release -> model directory), `parity` (check the
 * pipeline against a reference fixture), `degrade`, `eval` and `train` (delegated to their
 * own modules in this folder).
 *
 * Exit codes: 0 success; 1 the work failed (an image could not be restored, the conversion
 * failed); 2 usage error, or the model directory cannot be used (nothing was restored);
 * 130 / 143 interrupted (SIGINT / SIGTERM).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { OSDFace, type RestoredImage } from '../osdface.js';
import { DEFAULT_DETECTOR, DETECTOR_NAMES, isDetectorName, loadDetector, type Detector } from '../face/detectors.js';
import { sideBySide } from '../photo/compare.js';
import type { BackgroundUpsampler, PhotoImage } from '../photo/restore_photo.js';
import { convertRelease, type ConvertOptions } from '../pipeline/convert.js';
import { INT8_NEEDS_CALIBRATION } from '../pipeline/quantize_model.js';
import { IMAGE_EXTENSIONS, listImages } from '../degrade/args.js';
import { HOW_TO_CONVERT, ModelDirError, readManifest, type Manifest } from '../pipeline/manifest.js';
import { decodeImage, encodeImage, writeImageAtomic, type DecodedImage, type ImageFormat } from '../image/io.js';
import { PACKAGE_VERSION } from '../version.js';
import { runParityCommand } from './parity.js';
import { ArgumentError, parseFlags, type FlagSpec } from './args.js';
import { expandInputs, isDirectory } from './inputs.js';
import { encodeRestored, parseRestoreSettings, RESTORE_FLAGS, SEED_LIMIT } from './restore_options.js';
import { main as trainMain } from './train.js';

// ---------------------------------------------------------------------------------------------
// Usage

const MAIN_USAGE = `osdface ${PACKAGE_VERSION}: OSDFace one-step face restoration

usage:
  osdface restore <file | folder | glob>... -o <out dir> --model <model dir> [options]
  osdface detect <image>... [--json]
  osdface convert --sd <dir> --osdface <dir> -o <model dir> [options]
  osdface degrade <file | folder>... -o <out dir> --seed <N> [options]
  osdface eval --pred <dir> --gt <dir> [--lq <dir>] [options]
  osdface parity <fixture dir> [--json] [--skip-grad]
  osdface train --config <config.json> [--stop-at <step>]
  osdface export --checkpoint <run folder> -o <model dir>
  osdface serve [--port 8080] [--model <dir>] [options]
  osdface queue submit | worker | collect | status --redis <url> [options]
  osdface --help | --version

commands:
  restore   restore the faces in photos (detect, align, restore, paste back), or aligned
            face crops with --aligned
  detect    find faces: box, score and 5 landmarks
  convert   convert the official OSDFace release into a model directory
  degrade   make synthetic low-quality faces (GFPGAN / CodeFormer recipe)
  eval      PSNR / SSIM / NIQE of restored images against ground truth
  parity    check the pipeline against a reference fixture
  train     train (or resume) from a config
  export    turn a training run into a model directory
  serve     an HTTP service: POST /v1/restore, /healthz, /readyz, /metrics
  queue     restore many images on many machines through a Redis queue (BullMQ)

Run \`osdface <command> --help\` for a command's options.
`;

const RESTORE_USAGE = `usage: osdface restore <file | folder | glob>... -o <out dir> --model <model dir> [options]

Restores the faces in photos: every face is found (RetinaFace and its 5 landmarks, or
--detector ssd), aligned to the FFHQ 5-point template, restored, and pasted back with a soft mask;
the rest of the photo is kept as it is (or only upscaled). A photo without a face is written
unchanged, with a notice. With --aligned, each image is taken as one aligned face crop (no
detection). EXIF orientation is applied; grey and 16-bit images are read as 8-bit RGB.
Folders expand to their image files (png, jpg, jpeg, webp, bmp, tif, tiff; not recursive);
* and ? patterns are expanded when the shell did not. Each output is <out dir>/<input
name>.<format>. A file that fails is reported and the others go on.

options:
  -o, --out <dir>        output folder (created if missing)
  --model <dir>          converted model directory (from \`osdface convert\`)
  --format png|jpg|webp  output format (default png); png and webp keep an alpha channel
  --compare              also write <out dir>/<name>_compare.png: input | output side by side,
                         the input resized to the output's height
  --latent mode|sample   VAE posterior mean (default) or a sample of it
  --seed <N>             noise seed for --latent sample; image k of the list uses N+k (in a
                         photo, its j-th restored face N+k+j) (default: a random seed, printed)
  --skip-existing        leave outputs that already exist alone (reported as skipped)
  --batch <N>            faces (photos) or images (--aligned) per network call (default 1)
  --threads <N>          ONNX Runtime threads (default: all cores)
  --low-memory           load the UNet only while it runs: lower peak memory for a UNet
                         reload per network call (default for fp32 models: peak 4.2-4.55 GB instead
                         of 4.9 at 512x512, ~1 s more per call; see bench/RESULTS.md)
  --no-low-memory        keep the UNet loaded between calls (default for int8 models)
  --vae-tile <px>        run the VAE in tiles of this many pixels on any image larger than a
                         tile (exact: the same output up to float rounding; feature maps
                         above 64 MB go to temporary files in TMPDIR, so memory stays at the
                         tile's: 1.45 GB at 1024x1024)
                         (default: 512-pixel tiles above 1024x1024; 512x512 runs untiled)
  --vae-independent      independent tiles instead of exact ones: no files, but above 512x512
                         GroupNorm statistics are estimated from sample tiles (on random
                         weights that changed the output completely)
  --vae-overlap <px>     with --vae-independent: pixels each tile reads beyond its core on
                         every side (default: as far as the tiled layers see, 56 / 72 px for
                         the SD decoder / encoder, no seams; smaller is faster, with seams)
  --no-vae-tiling        never tile the VAE
  --json                 print a JSON summary on stdout
  -h, --help             this help

whole photos (the default):
  --upscale 1|2|4        output scale (default 1)
  --bg-upsampler lanczos|esrgan|none
                         how the background is upscaled: lanczos (default), esrgan (the x2/x4
                         ESRGAN-slim network of @upscalerjs/esrgan-slim, tiled) or none (pixels
                         repeated)
  --detector retinaface|ssd
                         face detector: retinaface (default) or ssd (face-api's SSD MobileNet V1)
  --only-center-face     restore only the face nearest the centre of the photo
  --max-faces <N>        restore at most N faces, the largest first
  --min-eye-distance <px>
                         leave faces whose eyes are closer than this as they are (default 24)
  --save-faces           also write each face's aligned crop before and after restoring:
                         <out dir>/faces/<name>_<k>_lq.png and <name>_<k>_restored.png
                         (k: the face's number, best detection first, from 0)

aligned face crops:
  --aligned              each image is one face already aligned to the FFHQ template (as the
                         official release expects): no detection; non-square images are
                         edge-padded to a square, restored and cropped back
  --size <N>             longer side of the outputs in pixels (default: each input's own size)

exit codes: 0 all restored or skipped, 1 some image failed, 2 usage error or unusable model
directory, 130 interrupted.
`;

const CONVERT_USAGE = `usage: osdface convert --sd <dir> --osdface <dir> -o <model dir> [options]

Converts the official OSDFace release into a model directory for \`osdface restore\`: ONNX graphs
with the LoRA merged into the UNet, the VQ codebook and a manifest. The directory appears only
when the conversion is complete.

options:
  --sd <dir>             stable-diffusion-2-1-base in diffusers layout (unet/, vae/, scheduler/)
  --osdface <dir>        the OSDFace weights: pytorch_lora_weights.safetensors,
                         embedding_change_weights.pth, associate_2.ckpt
  -o, --out <dir>        the model directory to write
  --lora-rank <N>        LoRA rank (default: the release's, 16)
  --lora-alpha <x>       LoRA alpha (default: the release's, 16)
  --dtype fp32|int8      weight type (default fp32). int8 quantizes the convolutions of the VAE
                         and UNet (about 2x faster on CPUs with VNNI; PSNR cost: bench/RESULTS.md)
  --calibration <dir>    int8: a folder of aligned face crops to calibrate activation ranges on
                         (10 or more, like the faces you will restore)
  --threads <N>          int8: threads for the calibration runs (default: all cores)
  --force                replace an existing model directory at -o
  -h, --help             this help

exit codes: 0 converted, 1 conversion failed, 2 usage error, 130/143 interrupted (nothing is
left at -o).
`;

const USAGES: Record<string, string> = { restore: RESTORE_USAGE, convert: CONVERT_USAGE, osdface: MAIN_USAGE };

/** The usage text of `topic` (a command), loading the command's module when it has its own; MAIN_USAGE for an unknown one. */
async function usageOf(topic: string | undefined): Promise<string> {
  switch (topic) {
    case 'detect':
      return (await import('./detect.js')).DETECT_USAGE;
    case 'degrade':
      return (await import('./degrade.js')).DEGRADE_USAGE;
    case 'eval':
      return (await import('./eval.js')).EVAL_USAGE;
    case 'export':
      return (await import('./export.js')).EXPORT_USAGE;
    case 'serve':
      return (await import('./serve.js')).SERVE_USAGE;
    case 'queue':
      return (await import('./queue.js')).QUEUE_USAGE;
    default:
      return topic !== undefined && topic in USAGES ? USAGES[topic]! : MAIN_USAGE;
  }
}

class UsageError extends Error {
  constructor(message: string, readonly command: 'restore' | 'convert' | 'osdface') {
    super(message);
  }
}

type FlagValue = import('./args.js').FlagValue;

/** The shared flag parser, with its errors reported against `command`'s usage. */
function parseArgs(argv: string[], spec: Record<string, FlagSpec>, command: UsageError['command']): { flags: Map<string, FlagValue>; positionals: string[] } {
  try {
    return parseFlags(argv, spec);
  } catch (e) {
    if (e instanceof ArgumentError) throw new UsageError(e.message, command);
    throw e;
  }
}

function positive(flags: Map<string, FlagValue>, name: string, command: UsageError['command']): number | undefined {
  const v = flags.get(name) as number | undefined;
  if (v !== undefined && !(v > 0)) throw new UsageError(`--${name} must be greater than 0, got ${v}`, command);
  return v;
}

interface Entry {
  input: string;
  output: string | null;
  /** With --compare: the side-by-side image. */
  compare?: string;
  status?: 'ok' | 'failed' | 'skipped';
  seconds?: number;
  error?: string;
  seed?: number;
  /** Faces restored (1 for an aligned crop). */
  faces?: number;
  /** Faces found (photos only). */
  detected?: number;
  notices?: string[];
}

/** Each argument to the files it stands for; an argument that stands for none becomes a failed entry. */
function entriesOf(args: string[]): Entry[] {
  return expandInputs(args).map((x) => (x.error === undefined ? { input: x.input, output: null } : { input: x.input, output: null, status: 'failed', error: x.error }));
}

// ---------------------------------------------------------------------------------------------
// Progress on stderr: a redrawn bar on a terminal, one line per image otherwise.

class Progress {
  private done = 0;
  private restored = 0;
  private restoreSeconds = 0;
  private readonly tty: boolean;

  constructor(private readonly total: number, private toRestore: number) {
    this.tty = process.stderr.isTTY === true;
  }

  /** Records a finished entry (ok, failed or skipped) and shows it. */
  report(e: Entry): void {
    this.done++;
    if (e.status === 'ok') {
      this.restored++;
      this.restoreSeconds += e.seconds ?? 0;
    }
    const counter = `[${this.done}/${this.total}]`;
    const notices = (e.notices ?? []).map((n) => `note: ${e.input}: ${n}`);
    if (this.tty) {
      if (e.status === 'failed') process.stderr.write(`\r\x1b[K${counter} failed  ${failureLine(e)}\n`);
      for (const n of notices) process.stderr.write(`\r\x1b[K${n}\n`);
      this.draw();
      return;
    }
    if (e.status === 'ok') {
      const faces = e.detected !== undefined ? `, ${e.faces} of ${e.detected} face${e.detected === 1 ? '' : 's'} restored` : '';
      process.stderr.write(`${counter} ok       ${e.input} -> ${e.output} (${e.seconds!.toFixed(2)} s${faces})\n`);
    } else if (e.status === 'skipped') process.stderr.write(`${counter} skipped  ${e.input} (${e.error})\n`);
    else process.stderr.write(`${counter} failed   ${failureLine(e)}\n`);
    for (const n of notices) process.stderr.write(`         ${n}\n`);
  }

  /** The images left to restore changed (an image was dropped before the network, e.g. unreadable). */
  dropped(): void {
    this.toRestore--;
  }

  private draw(): void {
    const width = 24;
    const filled = Math.round((width * this.done) / Math.max(1, this.total));
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    let text = `\r\x1b[Krestoring [${bar}] ${this.done}/${this.total}`;
    if (this.restored > 0) {
      const per = this.restoreSeconds / this.restored;
      const left = Math.max(0, this.toRestore - this.restored);
      text += `  ${per.toFixed(2)} s/image  ETA ${formatDuration(per * left)}`;
    }
    process.stderr.write(text);
  }

  start(): void {
    if (this.tty) this.draw();
  }

  end(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

function failureLine(e: Entry): string {
  return `${e.input}: ${e.error}`;
}

function formatDuration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** The message of `e` without a leading `<file>: ` (the entry already names the file). */
function reason(e: unknown, file: string): string {
  const msg = e instanceof Error ? e.message : String(e);
  for (const prefix of [`${file}: `, `${path.resolve(file)}: `]) if (msg.startsWith(prefix)) return msg.slice(prefix.length);
  return msg;
}

// ---------------------------------------------------------------------------------------------
// restore

async function restoreCommand(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, RESTORE_FLAGS, 'restore');
  if (flags.has('help')) {
    process.stdout.write(RESTORE_USAGE);
    return 0;
  }
  const usage = (msg: string) => new UsageError(msg, 'restore');
  const settings = parseRestoreSettings(flags, usage);
  const { mode, size, threads, vaeTiling, lowMemory, batch, maxFaces, minEyeDistance, latent, format, json, compare } = settings;
  let seed = settings.seed;
  if (positionals.length === 0) throw usage('no input images given');
  const modelDir = flags.get('model') as string | undefined;
  if (modelDir === undefined) throw usage(`--model <model dir> is required: a model directory converted from the official weights; ${HOW_TO_CONVERT}`);
  const outDir = flags.get('out') as string | undefined;
  if (outDir === undefined) throw usage('-o <out dir> is required: the folder the restored images go to');
  if (fs.existsSync(outDir) && !isDirectory(outDir)) throw usage(`-o ${outDir} is a file; give a folder (it is created if missing)`);
  const log = (msg: string) => process.stderr.write(`osdface restore: ${msg}\n`);

  // The model directory is checked before any work; its sessions are loaded only if there is any.
  let manifest: Manifest;
  try {
    manifest = readManifest(path.resolve(modelDir));
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return 2;
  }

  const entries = entriesOf(positionals);
  const writers = new Map<string, string>();
  for (const e of entries) {
    if (e.status) continue;
    const name = path.parse(e.input).name;
    const out = path.join(outDir, `${name}.${format}`);
    e.output = out;
    const outputs = [out];
    if (compare) {
      e.compare = path.join(outDir, `${name}_compare.png`);
      outputs.push(e.compare);
    }
    const clash = outputs.find((o) => path.resolve(o) === path.resolve(e.input));
    const taken = outputs.find((o) => writers.has(path.resolve(o)));
    if (clash !== undefined) {
      e.status = 'failed';
      e.error = `the output ${clash} would overwrite this input; choose another -o folder or --format`;
    } else if (taken !== undefined) {
      e.status = 'failed';
      e.error = `the output ${taken} is already written for ${writers.get(path.resolve(taken))}; restore files with the same name into separate folders`;
    } else {
      for (const o of outputs) writers.set(path.resolve(o), e.input);
      if (flags.has('skip-existing') && fs.existsSync(out)) {
        e.status = 'skipped';
        e.error = `${out} exists`;
      }
    }
  }
  if (latent === 'sample') {
    if (seed === undefined) {
      seed = crypto.randomInt(0, SEED_LIMIT - 1);
      log(`--latent sample without --seed: using seed ${seed} (image k of the list uses ${seed}+k)`);
    }
    entries.forEach((e, k) => { if (e.output !== null) e.seed = (seed! + k) % SEED_LIMIT; });
  }

  const todo = entries.filter((e) => !e.status);
  const progress = new Progress(entries.length, todo.length);
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\nosdface restore: interrupted; finishing the current image (Ctrl-C again to stop now)\n');
  };
  const started = Date.now();
  let model: OSDFace | null = null;
  let detector: Detector | null = null;
  const photo: PhotoSettings = {
    latent, format, compare, batch,
    upscale: settings.upscale,
    background: settings.background,
    onlyCenterFace: flags.has('only-center-face'),
    saveFaces: flags.has('save-faces') ? path.join(outDir, 'faces') : null,
    ...(maxFaces !== undefined ? { maxFaces } : {}),
    ...(minEyeDistance !== undefined ? { minEyeDistance } : {}),
  };
  try {
    if (todo.length > 0) {
      log(`loading ${manifest.dtype} model ${modelDir}`);
      try {
        model = await OSDFace.load(modelDir, {
          ...(threads !== undefined ? { threads } : {}), ...(vaeTiling !== undefined ? { vaeTiling } : {}), ...(lowMemory !== undefined ? { lowMemory } : {}),
        });
      } catch (e) {
        log(e instanceof Error ? e.message : String(e));
        return 2;
      }
      if (mode === 'photo') {
        try {
          detector = await loadDetector(settings.detector, threads !== undefined ? { threads } : {});
        } catch (e) {
          log(`cannot load the face detector: ${e instanceof Error ? e.message : String(e)} (restore aligned face crops with --aligned, which needs none)`);
          return 1;
        }
      }
      const what = mode === 'photo' ? `photo${todo.length === 1 ? '' : 's'}` : `aligned face image${todo.length === 1 ? '' : 's'}`;
      log(`restoring ${todo.length} ${what} into ${outDir} (${((Date.now() - started) / 1000).toFixed(1)} s to load)`);
    }
    process.on('SIGINT', onSignal);
    progress.start();
    for (const e of entries) if (e.status) progress.report(e);
    const step = mode === 'photo' ? 1 : batch;
    for (let i = 0; i < todo.length; i += step) {
      const chunk = todo.slice(i, i + step);
      if (interrupted) {
        for (const e of todo.slice(i)) {
          e.status = 'failed';
          e.error = 'interrupted before this image';
          progress.report(e);
        }
        break;
      }
      if (mode === 'photo') await restorePhotoEntry(model!, detector!, chunk[0]!, photo, progress);
      else await restoreChunk(model!, chunk, { latent, size, format, compare }, progress);
    }
  } finally {
    process.off('SIGINT', onSignal);
    progress.end();
    await Promise.all([model?.dispose(), detector?.dispose()]);
  }

  const count = (s: Entry['status']) => entries.filter((e) => e.status === s).length;
  const ok = count('ok');
  const failed = count('failed');
  const skipped = count('skipped');
  const facesLine = mode === 'photo' && ok > 0 ? ` (${entries.reduce((n, e) => n + (e.faces ?? 0), 0)} faces)` : '';
  log(`${ok} restored${facesLine}, ${failed} failed, ${skipped} skipped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (failed > 0 && process.stderr.isTTY) {
    for (const e of entries) if (e.status === 'failed') log(`failed: ${failureLine(e)}`);
  }
  if (json) {
    const images = entries.map((e) => ({
      input: e.input,
      output: e.output,
      status: e.status!,
      ...(e.seconds !== undefined ? { seconds: Number(e.seconds.toFixed(3)) } : {}),
      ...(e.seed !== undefined && e.status === 'ok' ? { seed: e.seed } : {}),
      ...(e.status === 'ok' ? { faces: e.faces ?? 0, ...(e.detected !== undefined ? { detected: e.detected } : {}), notices: e.notices ?? [] } : {}),
      ...(e.compare !== undefined && e.status === 'ok' ? { compare: e.compare } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    }));
    process.stdout.write(`${JSON.stringify({ model: path.resolve(modelDir), mode, images, ok, failed, skipped }, null, 2)}\n`);
  }
  if (interrupted) return 130;
  return failed > 0 ? 1 : 0;
}

interface ChunkSettings {
  latent: 'mode' | 'sample';
  size?: number;
  format: ImageFormat;
  compare: boolean;
}

/** Encodes `img` as png (with its alpha) and writes it. */
async function writePng(file: string, img: PhotoImage): Promise<void> {
  await writeImageAtomic(file, await encodeImage(img, 'png', img.alpha));
}

/** Decodes, restores (one call for the chunk), encodes and writes; every entry ends ok or failed. */
async function restoreChunk(model: OSDFace, chunk: Entry[], s: ChunkSettings, progress: Progress): Promise<void> {
  const t0 = performance.now();
  const fail = (e: Entry, err: unknown) => {
    e.status = 'failed';
    e.error = reason(err, e.input);
    progress.report(e);
  };
  const ready: { entry: Entry; image: DecodedImage }[] = [];
  for (const entry of chunk) {
    try {
      ready.push({ entry, image: await decodeImage(entry.input) });
    } catch (err) {
      progress.dropped();
      fail(entry, err);
    }
  }
  if (ready.length === 0) return;
  const opts = { latent: s.latent, ...(s.size !== undefined ? { size: s.size } : {}) };
  let results: RestoredImage[];
  try {
    results = await model.restore(ready.map((r) => r.image), s.latent === 'sample' ? { ...opts, seed: ready.map((r) => r.entry.seed!) } : opts);
  } catch (err) {
    if (ready.length === 1) {
      fail(ready[0]!.entry, err);
      return;
    }
    // Whatever broke the batch, give each image its own chance.
    for (const r of ready) await restoreChunk(model, [r.entry], s, progress);
    return;
  }
  const perImage = (performance.now() - t0) / 1000 / ready.length;
  for (let i = 0; i < ready.length; i++) {
    const { entry, image } = ready[i]!;
    const t1 = performance.now();
    try {
      const res = results[i]!;
      if (s.compare) await writePng(entry.compare!, await sideBySide(image, res));
      const bytes = await encodeRestored(res, s.format);
      await writeImageAtomic(entry.output!, bytes);
      entry.status = 'ok';
      entry.faces = 1;
      entry.seconds = perImage + (performance.now() - t1) / 1000;
      progress.report(entry);
    } catch (err) {
      fail(entry, err);
    }
  }
}

interface PhotoSettings {
  latent: 'mode' | 'sample';
  format: ImageFormat;
  compare: boolean;
  batch: number;
  upscale: 1 | 2 | 4;
  background: BackgroundUpsampler;
  onlyCenterFace: boolean;
  maxFaces?: number;
  minEyeDistance?: number;
  /** The folder for --save-faces, or null. */
  saveFaces: string | null;
}

/**
 * Restores one whole photo: decode, detect + restore + paste back (model.restorePhoto), then
 * the face crops (--save-faces), the side-by-side (--compare) and the output, which is written
 * last. The entry ends ok or failed.
 */
async function restorePhotoEntry(model: OSDFace, detector: Detector, entry: Entry, s: PhotoSettings, progress: Progress): Promise<void> {
  const t0 = performance.now();
  let image: DecodedImage;
  try {
    image = await decodeImage(entry.input);
  } catch (err) {
    progress.dropped();
    entry.status = 'failed';
    entry.error = reason(err, entry.input);
    progress.report(entry);
    return;
  }
  try {
    const res = await model.restorePhoto(image, {
      detector,
      latent: s.latent,
      ...(entry.seed !== undefined ? { seed: entry.seed } : {}),
      batch: s.batch,
      upscale: s.upscale,
      background: s.background,
      onlyCenterFace: s.onlyCenterFace,
      saveFaces: s.saveFaces !== null,
      ...(s.maxFaces !== undefined ? { maxFaces: s.maxFaces } : {}),
      ...(s.minEyeDistance !== undefined ? { minEyeDistance: s.minEyeDistance } : {}),
    });
    if (s.saveFaces !== null) {
      const name = path.parse(entry.input).name;
      for (const f of res.faces) {
        if (!f.crop || !f.restoredCrop) continue;
        await writePng(path.join(s.saveFaces, `${name}_${f.index}_lq.png`), f.crop);
        await writePng(path.join(s.saveFaces, `${name}_${f.index}_restored.png`), f.restoredCrop);
      }
    }
    if (s.compare) await writePng(entry.compare!, await sideBySide(image, res.image));
    const bytes = await encodeRestored(res.image, s.format);
    await writeImageAtomic(entry.output!, bytes);
    entry.status = 'ok';
    entry.faces = res.faces.filter((f) => f.status === 'restored').length;
    entry.detected = res.faces.length;
    entry.notices = res.faces.length === 0
      ? res.notices.map((n) => `${n} (a face crop that fills the frame is restored with --aligned)`)
      : res.notices;
    entry.seconds = (performance.now() - t0) / 1000;
    progress.report(entry);
  } catch (err) {
    entry.status = 'failed';
    entry.error = reason(err, entry.input);
    progress.report(entry);
  }
}

// ---------------------------------------------------------------------------------------------
// convert: runs in a worker thread, so that Ctrl-C / SIGTERM can stop it at once and remove the
// partial output (the conversion itself is synchronous work).

const CONVERT_FLAGS: Record<string, FlagSpec> = {
  sd: { kind: 'string' },
  osdface: { kind: 'string' },
  out: { kind: 'string', short: 'o' },
  'lora-rank': { kind: 'int' },
  'lora-alpha': { kind: 'number' },
  dtype: { kind: 'string', choices: ['fp32', 'int8'] },
  calibration: { kind: 'string' },
  threads: { kind: 'int' },
  force: { kind: 'bool' },
  help: { kind: 'bool', short: 'h' },
};

const CONVERT_WORKER = 'osdface-convert-worker';

type WorkerMessage =
  | { type: 'progress'; step: string; done: number; total: number }
  | { type: 'done'; manifest: Manifest }
  | { type: 'error'; message: string };

/** Temporary directories convertRelease makes beside `out` (`.<name>.partial-XXXXXX`, and `.old` ones while replacing). */
function partialDirs(out: string): string[] {
  const parent = path.dirname(out);
  const prefix = `.${path.basename(out)}.partial-`;
  try {
    return fs.readdirSync(parent).filter((n) => n.startsWith(prefix)).map((n) => path.join(parent, n));
  } catch {
    return [];
  }
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) if (f.isFile()) n += fs.statSync(path.join(dir, f.name)).size;
  return n;
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e3).toFixed(1)} kB`;
}

async function convertCommand(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, CONVERT_FLAGS, 'convert');
  if (flags.has('help')) {
    process.stdout.write(CONVERT_USAGE);
    return 0;
  }
  const usage = (msg: string) => new UsageError(msg, 'convert');
  if (positionals.length > 0) throw usage(`unexpected argument '${positionals[0]}' (the folders are given with --sd, --osdface and -o)`);
  for (const [flag, what] of [['sd', 'the stable-diffusion-2-1-base folder'], ['osdface', 'the OSDFace weights folder'], ['out', 'the model directory to write']] as const) {
    if (!flags.has(flag)) throw usage(`${flag === 'out' ? '-o' : `--${flag}`} <dir> is required: ${what}`);
  }
  const opts: Omit<ConvertOptions, 'onProgress'> = {
    sd: flags.get('sd') as string,
    osdface: flags.get('osdface') as string,
    out: path.resolve(flags.get('out') as string),
    force: flags.has('force'),
  };
  const rank = positive(flags, 'lora-rank', 'convert');
  const alpha = positive(flags, 'lora-alpha', 'convert');
  if (rank !== undefined) opts.loraRank = rank;
  if (alpha !== undefined) opts.loraAlpha = alpha;
  if (flags.has('dtype')) opts.dtype = flags.get('dtype') as 'fp32' | 'int8';
  if (flags.has('calibration')) {
    if (opts.dtype !== 'int8') throw usage('--calibration is for --dtype int8 (fp32 conversion needs no calibration)');
    const dir = flags.get('calibration') as string;
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw usage(`--calibration ${dir}: not a folder (give a folder of aligned face crops)`);
    opts.calibration = listImages(dir);
    if (opts.calibration.length === 0) throw usage(`--calibration ${dir}: no images in it (${[...IMAGE_EXTENSIONS].join(', ')})`);
  } else if (opts.dtype === 'int8') {
    throw usage(INT8_NEEDS_CALIBRATION);
  }
  const threads = positive(flags, 'threads', 'convert');
  if (threads !== undefined) opts.threads = threads;
  const log = (msg: string) => process.stderr.write(`osdface convert: ${msg}\n`);

  const before = new Set(partialDirs(opts.out));
  const started = Date.now();
  const worker = new Worker(new URL(import.meta.url), { workerData: { [CONVERT_WORKER]: opts } });
  return new Promise<number>((resolve) => {
    let result: { code: number; manifest?: Manifest } | null = null;
    let signal: NodeJS.Signals | null = null;
    const cleanup = () => {
      for (const p of partialDirs(opts.out)) {
        if (before.has(p)) continue;
        // Replacing with --force moves the old model to `<tmp>.old` for a moment: put it back.
        if (p.endsWith('.old') && !fs.existsSync(opts.out)) {
          fs.renameSync(p, opts.out);
          log(`restored the previous ${opts.out}`);
        } else {
          fs.rmSync(p, { recursive: true, force: true });
          log(`removed the partial output ${p}`);
        }
      }
    };
    const onSignal = (sig: NodeJS.Signals) => {
      if (signal || result) return;
      signal = sig;
      log(`${sig}: stopping the conversion`);
      void worker.terminate();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'progress') {
        const elapsed = ((Date.now() - started) / 1000).toFixed(1);
        log(m.done < m.total ? `[${m.done + 1}/${m.total}] ${m.step} (${elapsed} s)` : `${m.step} (${elapsed} s)`);
      } else if (m.type === 'done') {
        result = { code: 0, manifest: m.manifest };
      } else {
        result = { code: 1 };
        log(`failed: ${m.message}`);
      }
    });
    worker.on('error', (e) => {
      result ??= { code: 1 };
      log(`failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    });
    worker.on('exit', (exitCode) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (result?.manifest) {
        const m = result.manifest;
        const lora = m.lora ? `LoRA rank ${m.lora.rank} alpha ${m.lora.alpha} merged into ${m.lora.modules} modules` : 'no LoRA';
        process.stdout.write(`${opts.out}\n`);
        process.stdout.write(
          `  ${m.dtype} model, process size ${m.settings.processSize}, timestep ${m.settings.timestep}, ${lora}, ` +
          `${Object.keys(m.graphs).length} graphs, ${formatBytes(dirBytes(opts.out))}, ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
        );
        resolve(0);
        return;
      }
      cleanup();
      if (signal) {
        resolve(signal === 'SIGINT' ? 130 : 143);
        return;
      }
      if (!result) log(`the conversion stopped unexpectedly (worker exit code ${exitCode})`);
      resolve(result?.code || 1);
    });
  });
}

async function convertWorker(opts: Omit<ConvertOptions, 'onProgress'>): Promise<void> {
  const port = parentPort!;
  try {
    const manifest = await convertRelease({ ...opts, onProgress: (step, done, total) => port.postMessage({ type: 'progress', step, done, total } satisfies WorkerMessage) });
    port.postMessage({ type: 'done', manifest } satisfies WorkerMessage);
  } catch (e) {
    port.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e) } satisfies WorkerMessage);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'restore':
        return await restoreCommand(rest);
      case 'convert':
        return await convertCommand(rest);
      case 'parity':
        return await runParityCommand(rest, 'osdface parity');
      case 'train':
        return await trainMain(rest);
      case 'detect':
        return await (await import('./detect.js')).main(rest);
      case 'degrade':
        return await (await import('./degrade.js')).main(rest);
      case 'eval':
        return await (await import('./eval.js')).main(rest);
      case 'export':
        return await (await import('./export.js')).main(rest);
      case 'serve':
        return await (await import('./serve.js')).main(rest);
      case 'queue':
        return await (await import('./queue.js')).main(rest);
      case '--version':
      case '-v':
        process.stdout.write(`osdface ${PACKAGE_VERSION}\n`);
        return 0;
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(await usageOf(rest[0]));
        return 0;
      case undefined:
        throw new UsageError('no command given', 'osdface');
      default:
        throw new UsageError(`unknown command '${command}'`, 'osdface');
    }
  } catch (e) {
    if (e instanceof UsageError) {
      const name = e.command === 'osdface' ? 'osdface' : `osdface ${e.command}`;
      process.stderr.write(`${name}: ${e.message}\n\n${USAGES[e.command]}`);
      return 2;
    }
    if (e instanceof ModelDirError) {
      process.stderr.write(`osdface: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

if (!isMainThread) {
  const data = workerData as Record<string, unknown> | null;
  if (data && CONVERT_WORKER in data) void convertWorker(data[CONVERT_WORKER] as Omit<ConvertOptions, 'onProgress'>);
} else {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`osdface: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
