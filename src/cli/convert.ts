/**
 * `osdface convert`: the official release -> a model directory. The conversion runs in a worker
 * thread, so that Ctrl-C / SIGTERM can stop it at once and remove the partial output (the
 * conversion itself is synchronous work).
 *
 * Progress is one sequence: every step (hashing the sources, writing each graph, calibrating on
 * each image for int8, finishing, optimizing each graph for this CPU) is counted once, `[k/n]`
 * with one n, and `done` comes last.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { convertRelease, GRAPH_FILES, type ConvertOptions } from '../pipeline/convert.js';
import { INT8_NEEDS_CALIBRATION, QUANTIZED_STAGES } from '../pipeline/quantize_model.js';
import { IMAGE_EXTENSIONS, listImages } from '../degrade/args.js';
import type { Manifest } from '../pipeline/manifest.js';
import { ArgumentError, parseFlags, type FlagSpec } from './args.js';

export const CONVERT_USAGE = `usage: osdface convert --sd <dir> --osdface <dir> -o <model dir> [options]

Converts the official OSDFace release into a model directory for \`osdface restore\`: ONNX graphs
with the LoRA merged into the UNet, the VQ codebook and a manifest. The directory appears only
when the conversion is complete.

options:
  --sd <dir>             stable-diffusion-2-1-base in diffusers layout (unet/, vae/, scheduler/)
  --osdface <dir>        the OSDFace weights: pytorch_lora_weights.safetensors,
                         embedding_change_weights.pth, associate_2.ckpt (and optionally
                         config.json)
  -o, --out <dir>        the model directory to write
  --lora-rank <N>        LoRA rank (default: "lora": {"rank"} in the --osdface folder's
                         config.json, else 16)
  --lora-alpha <x>       LoRA alpha (default: "lora": {"alpha"} in the --osdface folder's
                         config.json, else 16)
  --dtype fp32|int8      weight type (default fp32). int8 quantizes the convolutions of the VAE
                         and UNet (about 2x faster on CPUs with VNNI; PSNR cost: bench/RESULTS.md)
                         and needs --calibration
  --calibration <dir>    int8: a folder of aligned face crops to calibrate activation ranges on
                         (10 or more, like the faces you will restore)
  --threads <N>          int8: threads for the calibration runs (default: all cores)
  --force                replace an existing model directory at -o
  -h, --help             this help

exit codes: 0 converted, 1 conversion failed, 2 usage error, 130/143 interrupted (nothing is
left at -o).
`;

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

/** Bytes of the files in `dir` and its folders. */
function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, f.name);
    if (f.isFile()) n += fs.statSync(p).size;
    else if (f.isDirectory()) n += dirBytes(p);
  }
  return n;
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e3).toFixed(1)} kB`;
}

/**
 * Numbers the conversion's steps as one sequence. convertRelease reports three phases, each
 * counted from 0: hashing the sources (1 step), writing the directory (its own total, then its
 * own 'done'), and optimizing each graph for this CPU (one step each). `expected` is the whole
 * count as planned; the writing phase's own total corrects it if it differs.
 */
export class ConvertSteps {
  private count = 0;
  private writeTotal: number;

  constructor(private readonly graphs: number, expectedWriteSteps: number) {
    this.writeTotal = expectedWriteSteps;
  }

  /** The steps of a conversion: fp32 writes each graph + finishing; int8 also calibrates on each image and writes the int8 graphs. */
  static plan(dtype: 'fp32' | 'int8', calibrationImages: number): ConvertSteps {
    const graphs = Object.keys(GRAPH_FILES).length;
    const write = dtype === 'int8' ? graphs + calibrationImages + QUANTIZED_STAGES.length + 1 : graphs + 1;
    return new ConvertSteps(graphs, write);
  }

  get total(): number {
    return 1 + this.writeTotal + this.graphs;
  }

  /** The line for one progress report, or null for a phase's own 'done' (not a step). */
  line(step: string, phaseTotal: number): string | null {
    if (step === 'done') return null;
    if (phaseTotal > 1) this.writeTotal = phaseTotal;
    this.count++;
    return `[${Math.min(this.count, this.total)}/${this.total}] ${step}`;
  }
}

/** Runs `osdface convert` with the arguments after `convert`; returns the exit code. */
export async function convertCommand(argv: string[]): Promise<number> {
  const { flags, positionals } = parseFlags(argv, CONVERT_FLAGS);
  if (flags.has('help')) {
    process.stdout.write(CONVERT_USAGE);
    return 0;
  }
  const usage = (msg: string) => new ArgumentError(msg);
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
  const positive = (name: string): number | undefined => {
    const v = flags.get(name) as number | undefined;
    if (v !== undefined && !(v > 0)) throw usage(`--${name} must be greater than 0, got ${v}`);
    return v;
  };
  const rank = positive('lora-rank');
  const alpha = positive('lora-alpha');
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
  const threads = positive('threads');
  if (threads !== undefined) opts.threads = threads;
  const log = (msg: string) => process.stderr.write(`osdface convert: ${msg}\n`);

  const before = new Set(partialDirs(opts.out));
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const steps = ConvertSteps.plan(opts.dtype ?? 'fp32', opts.calibration?.length ?? 0);
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
        const line = steps.line(m.step, m.total);
        if (line !== null) log(`${line} (${elapsed()})`);
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
        log(`done (${elapsed()})`);
        process.stdout.write(`${opts.out}\n`);
        process.stdout.write(
          `  ${m.dtype} model, process size ${m.settings.processSize}, timestep ${m.settings.timestep}, ${lora}, ` +
          `${Object.keys(m.graphs).length} graphs, ${formatBytes(dirBytes(opts.out))}, ${elapsed()}\n`,
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

if (!isMainThread) {
  const data = workerData as Record<string, unknown> | null;
  if (data && typeof data === 'object' && CONVERT_WORKER in data) void convertWorker(data[CONVERT_WORKER] as Omit<ConvertOptions, 'onProgress'>);
}
