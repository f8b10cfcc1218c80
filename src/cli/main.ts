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
import { isMainThread } from 'node:worker_threads';
import type { OSDFace, RestoredImage } from '../osdface.js';
import type { Detector } from '../face/detectors.js';
import { sideBySide } from '../photo/compare.js';
import { DEFAULT_MIN_EYE_DISTANCE, type BackgroundUpsampler, type PhotoImage } from '../photo/restore_photo.js';
import { ModelDirError, readManifest, type Manifest } from '../pipeline/manifest.js';
import { decodeImage, encodeImage, writeImageAtomic, type DecodedImage, type ImageFormat } from '../image/io.js';
import { PACKAGE_VERSION } from '../version.js';
import { runParityCommand } from './parity.js';
import { resolveModelDir } from '../pipeline/default_model.js';
import { ArgumentError, parseFlags, reportUsageError, type FlagSpec, type FlagValue } from './args.js';
import { convertCommand, CONVERT_USAGE } from './convert.js';
import { expandInputs, isDirectory } from './inputs.js';
import { plural, Progress, reason, type Entry, type EntryStatus } from './restore_progress.js';
import { loadForRestore } from './restore_load.js';
import { encodeRestored, parseRestoreSettings, RESTORE_FLAGS, SEED_LIMIT } from './restore_options.js';
import { main as trainMain, TRAIN_USAGE } from './train.js';
import { checkImageRun, isVideoInput, restoreVideoCommand, VIDEO_FLAGS, VIDEO_HELP } from '../video/cli.js';

// ---------------------------------------------------------------------------------------------
// Usage

const MAIN_USAGE = `osdface ${PACKAGE_VERSION}: OSDFace one-step face restoration

usage:
  osdface restore <file | folder | glob>... -o <out dir> [--model <model dir>] [options]
  osdface detect <file | folder | glob>... [--json]
  osdface convert --sd <dir> --osdface <dir> -o <model dir> [options]
  osdface degrade <file | folder | glob>... -o <out dir> --seed <N> [options]
  osdface eval --pred <dir> --gt <dir> [--lq <dir>] [options]
  osdface parity <fixture dir> [--json] [--skip-grad]
  osdface train --config <config.json> [--stop-at <step>]
  osdface export --checkpoint <run folder> -o <model dir>
  osdface serve [--port 8080] [--model <dir>] [options]
  osdface web [--port 8090] [--host 127.0.0.1]
  osdface queue submit | worker | collect | status --redis <url> [options]
  osdface --help | --version

commands:
  restore   restore the faces in photos (detect, align, restore, paste back), or aligned
            face crops with --aligned
  detect    find faces: box, score and 5 landmarks
  convert   convert the official OSDFace release into a model directory
  degrade   make synthetic low-quality faces (GFPGAN / CodeFormer recipe)
  eval      metrics of restored images against ground truth (PSNR, SSIM, NIQE, LMD, IDS,
            LPIPS, DISTS, FID) and an HTML report
  parity    check the pipeline against a reference fixture
  train     train (or resume) from a config
  export    turn a training run into a model directory
  serve     an HTTP service: POST /v1/restore, /healthz, /readyz, /metrics
  web       the browser app: restore photos in the page, nothing uploaded
  queue     restore many images on many machines through a Redis queue (BullMQ)

Run \`osdface <command> --help\` for a command's options.
`;

const RESTORE_USAGE = `usage: osdface restore <file | folder | glob>... -o <out dir> [--model <model dir>] [options]

Restores the faces in photos: every face is found (RetinaFace and its 5 landmarks, or
--detector ssd), aligned to the FFHQ 5-point template, restored, and pasted back with a soft mask;
the rest of the photo is kept as it is (or only upscaled). A photo without a face is written
unchanged, with a notice. With --aligned, each image is taken as one aligned face crop (no
detection). EXIF orientation is applied; grey and 16-bit images are read as 8-bit RGB.
Folders expand to their image files (png, jpg, jpeg, webp, bmp, tif, tiff; not recursive);
*, ? and [...] patterns are expanded when the shell did not. Each output is <out dir>/<input
name>.<format>. A file that fails is reported and the others go on. A photo in which no face
was restored (none found, or all left as they are) is written as it is and reported as
"unchanged", with notes that say why.

options:
  -o, --out <dir>        output folder (created if missing)
  --model <dir>          a model directory (from \`osdface convert\` or \`osdface export\`); default:
                         the packaged osdface-small model
  --format png|jpg|webp  output format (default png); png and webp keep an alpha channel
  --compare              also write <out dir>/<name>_compare.png: input | output side by side,
                         the input resized to the output's height
  --latent mode|sample   VAE posterior mean (default) or a sample of it
  --seed <N>             noise seed for --latent sample; image k of the list uses N+k (in a
                         photo, its j-th restored face N+k+j) (default: a random seed, printed)
  --fidelity <w>         0 (default): the model as trained ... 1: closest to the input; in
                         between, the latent moves towards the input's (src/pipeline/fidelity.ts)
  --skip-existing        leave outputs that already exist alone (reported as skipped)
  --batch <N>            faces (photos) or images (--aligned) per network call (default 1)
  --threads <N>          ONNX Runtime threads (default: all cores)
  --device cpu|cuda      where the networks run (default cpu); cuda: an NVIDIA GPU through
                         onnxruntime-node's CUDA execution provider, which osdface does not
                         install: without it, exit 2 with the command that installs it
                         (README "Device"); face detection stays on the CPU
  --low-memory           load the UNet only while it runs: lower peak memory for a UNet
                         reload per network call (default for fp32 models over 256 MB: peak 4.2-4.55 GB instead
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
  --json                 print a JSON summary on stdout (status, faces, notices, files
                         written; a skip's reason, a failure's error)
  -h, --help             this help

whole photos (the default):
  --upscale 1|2|4        output scale (default 1)
  --bg-upsampler lanczos|esrgan|none
                         how the background is upscaled: lanczos (default), esrgan (the x2/x4
                         ESRGAN-slim network of @upscalerjs/esrgan-slim, tiled) or none (pixels
                         repeated)
  --only-center-face     restore only the face nearest the centre of the photo
  --max-faces <N>        restore at most N faces, the largest first
  --min-eye-distance <px>
                         leave faces whose eyes are closer than this as they are (default ${DEFAULT_MIN_EYE_DISTANCE})
  --detector retinaface|ssd
                         face detector: retinaface (default) or ssd (face-api's SSD MobileNet V1)
  --save-faces           also write each face's aligned crop before and after restoring:
                         <out dir>/faces/<name>_<k>_lq.png and <name>_<k>_restored.png
                         (k: the face's number, best detection first, from 0)

aligned face crops:
  --aligned              each image is one face already aligned to the FFHQ template (as the
                         official release expects): no detection; non-square images are
                         edge-padded to a square, restored and cropped back
  --size <N>             longer side of the outputs in pixels (default: each input's own size)

${VIDEO_HELP}
exit codes: 0 all restored, unchanged or skipped, 1 some image failed, 2 usage error or unusable model
directory, 130 interrupted.
`;

const COMMANDS = ['restore', 'detect', 'convert', 'degrade', 'eval', 'parity', 'train', 'export', 'serve', 'queue', 'web'] as const;

/** The usage text of `command`, loading the command's module when it has its own; null for an unknown command. */
async function usageOf(command: string | undefined): Promise<string | null> {
  switch (command) {
    case undefined:
      return MAIN_USAGE;
    case 'restore':
      return RESTORE_USAGE;
    case 'convert':
      return CONVERT_USAGE;
    case 'train':
      return TRAIN_USAGE;
    case 'parity':
      return (await import('./parity.js')).PARITY_USAGE;
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
    case 'web':
      return (await import('./web.js')).WEB_USAGE;
    default:
      return null;
  }
}

/** A usage error of `restore` (reported as `osdface restore: <message>` + where the help is, exit 2). */
const usage = (msg: string) => new ArgumentError(msg);

function positive(flags: Map<string, FlagValue>, name: string): number | undefined {
  const v = flags.get(name) as number | undefined;
  if (v !== undefined && !(v > 0)) throw usage(`--${name} must be greater than 0, got ${v}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// restore


async function restoreCommand(argv: string[]): Promise<number> {
  const { flags, positionals } = parseFlags(argv, { ...RESTORE_FLAGS, ...VIDEO_FLAGS });
  if (flags.has('help')) {
    process.stdout.write(RESTORE_USAGE);
    return 0;
  }
  if (positionals.some(isVideoInput)) return restoreVideoCommand(flags, positionals, usage);
  checkImageRun(flags, positionals, usage);
  const settings = parseRestoreSettings(flags, usage);
  const { mode, size, batch, maxFaces, minEyeDistance, latent, format, json, compare } = settings;
  let seed = settings.seed;
  if (positionals.length === 0) throw usage('no input images given');
  const modelFlag = flags.get('model') as string | undefined;
  const outDir = flags.get('out') as string | undefined;
  if (outDir === undefined) throw usage('-o <out dir> is required: the folder the restored images go to');
  if (fs.existsSync(outDir) && !isDirectory(outDir)) throw usage(`-o ${outDir} is a file; give a folder (it is created if missing)`);
  const log = (msg: string) => process.stderr.write(`osdface restore: ${msg}\n`);

  // The model directory is checked before any work; its sessions are loaded only if there is any.
  let manifest: Manifest;
  let modelDir: string;
  try {
    // Without --model: the packaged default model (osdface-small).
    modelDir = resolveModelDir(modelFlag);
    manifest = readManifest(modelDir);
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return 2;
  }

  const entries: Entry[] = expandInputs(positionals).map((f) => ({
    input: f.input, output: null, ...(f.error !== undefined ? { status: 'failed' as const, error: f.error } : {}),
  }));
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
        e.reason = `${out} exists (--skip-existing)`;
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
  // Entries settled before restoring (failed, skipped) are reported in input order among the others.
  let reported = 0;
  const reportSettledBefore = (entry: Entry | undefined) => {
    const end = entry === undefined ? entries.length : entries.indexOf(entry);
    for (; reported < end; reported++) {
      const e = entries[reported]!;
      if (!todo.includes(e)) progress.report(e);
    }
  };
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
    latent, format, compare, batch, fidelity: settings.fidelity ?? 0,
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
      const loaded = await loadForRestore(modelDir, settings, log, { detector: mode === 'photo', detectorHint: ' (restore aligned face crops with --aligned, which needs none)' });
      if ('exitCode' in loaded) return loaded.exitCode;
      ({ model, detector } = loaded);
      const what = mode === 'photo' ? 'photo' : 'aligned face image';
      const settled = entries.length - todo.length;
      const others = settled === 0 ? '' : ` (${settled} of the ${plural(entries.length, 'input')} given failed or ${settled === 1 ? 'was' : 'were'} skipped before restoring)`;
      log(`loaded in ${((Date.now() - started) / 1000).toFixed(1)} s; restoring ${plural(todo.length, what)} into ${outDir}${others}`);
    }
    process.on('SIGINT', onSignal);
    progress.start();
    const step = mode === 'photo' ? 1 : batch;
    for (let i = 0; i < todo.length; i += step) {
      const chunk = todo.slice(i, i + step);
      reportSettledBefore(chunk[0]);
      if (interrupted) {
        for (const e of todo.slice(i)) {
          e.status = 'failed';
          e.error = 'interrupted before this image';
        }
        break;
      }
      if (mode === 'photo') await restorePhotoEntry(model!, detector!, chunk[0]!, photo, progress);
      else await restoreChunk(model!, chunk, { latent, size, format, compare, fidelity: settings.fidelity ?? 0 }, progress);
      reported = Math.max(reported, entries.indexOf(chunk[chunk.length - 1]!) + 1);
    }
    // What is left: settled entries after the last restored one, and images an interruption stopped.
    for (; reported < entries.length; reported++) {
      const e = entries[reported]!;
      if (!todo.includes(e) || e.error === 'interrupted before this image') progress.report(e);
    }
  } finally {
    process.off('SIGINT', onSignal);
    progress.end();
    await Promise.all([model?.dispose(), detector?.dispose()]);
  }

  const count = (s: EntryStatus) => entries.filter((e) => e.status === s).length;
  const ok = count('ok');
  const unchanged = count('unchanged');
  const failed = count('failed');
  const skipped = count('skipped');
  const facesLine = mode === 'photo' && ok > 0 ? ` (${plural(entries.reduce((n, e) => n + (e.faces ?? 0), 0), 'face')})` : '';
  const unchangedLine = mode === 'photo' ? `, ${unchanged} unchanged (no face restored: see the notes)` : '';
  log(`${ok} restored${facesLine}${unchangedLine}, ${failed} failed, ${skipped} skipped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (failed > 0 && process.stderr.isTTY) {
    for (const e of entries) if (e.status === 'failed') log(`failed: ${e.input}: ${e.error}`);
  }
  if (json) {
    const written = (e: Entry) => e.status === 'ok' || e.status === 'unchanged';
    const images = entries.map((e) => ({
      input: e.input,
      output: e.output,
      status: e.status!,
      ...(e.seconds !== undefined ? { seconds: Number(e.seconds.toFixed(3)) } : {}),
      ...(e.seed !== undefined && written(e) ? { seed: e.seed } : {}),
      ...(written(e) ? { faces: e.faces ?? 0, ...(e.detected !== undefined ? { detected: e.detected } : {}), notices: e.notices ?? [] } : {}),
      ...(e.compare !== undefined && written(e) ? { compare: e.compare } : {}),
      ...(e.savedFaces !== undefined && written(e) ? { savedFaces: e.savedFaces } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.error !== undefined ? { error: e.error } : {}),
    }));
    const counts = mode === 'photo' ? { ok, unchanged, failed, skipped } : { ok, failed, skipped };
    process.stdout.write(`${JSON.stringify({ model: path.resolve(modelDir), mode, images, ...counts }, null, 2)}\n`);
  }
  if (interrupted) return 130;
  return failed > 0 ? 1 : 0;
}

interface ChunkSettings {
  latent: 'mode' | 'sample';
  fidelity: number;
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
  const opts = { latent: s.latent, fidelity: s.fidelity, ...(s.size !== undefined ? { size: s.size } : {}) };
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
  fidelity: number;
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
      fidelity: s.fidelity,
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
      entry.savedFaces = [];
      for (const f of res.faces) {
        if (!f.crop || !f.restoredCrop) continue;
        for (const [suffix, img] of [['lq', f.crop], ['restored', f.restoredCrop]] as const) {
          const file = path.join(s.saveFaces, `${name}_${f.index}_${suffix}.png`);
          await writePng(file, img);
          entry.savedFaces.push(file);
        }
      }
    }
    if (s.compare) await writePng(entry.compare!, await sideBySide(image, res.image));
    const bytes = await encodeRestored(res.image, s.format);
    await writeImageAtomic(entry.output!, bytes);
    entry.faces = res.faces.filter((f) => f.status === 'restored').length;
    entry.status = entry.faces > 0 ? 'ok' : 'unchanged';
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

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'restore':
        return await restoreCommand(rest);
      case 'convert':
        return await convertCommand(rest);
      case 'parity':
        return await runParityCommand(rest);
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
      case 'web':
        return await (await import('./web.js')).main(rest);
      case '--version':
      case '-v':
        process.stdout.write(`osdface ${PACKAGE_VERSION}\n`);
        return 0;
      case '--help':
      case '-h':
      case 'help': {
        const text = await usageOf(rest[0]);
        if (text === null) return reportUsageError(null, `unknown command '${rest[0]}' (commands: ${COMMANDS.join(', ')})`);
        process.stdout.write(text);
        return 0;
      }
      case undefined:
        return reportUsageError(null, `no command given (commands: ${COMMANDS.join(', ')})`);
      default:
        return reportUsageError(null, `unknown command '${command}' (commands: ${COMMANDS.join(', ')})`);
    }
  } catch (e) {
    if (e instanceof ArgumentError) return reportUsageError(command!, e.message);
    if (e instanceof ModelDirError) {
      process.stderr.write(`osdface ${command}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

if (isMainThread) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`osdface: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
