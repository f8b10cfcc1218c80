/**
 * `osdface export --checkpoint <run folder | checkpoint> -o <model dir>`: a training run as a model
 * directory for `restore`, `OSDFace.load` and the other commands (src/train/export.ts).
 *
 * Exit codes: 0 exported; 1 the export failed; 2 usage error.
 */
import { ArgumentError, parseFlags, reportUsageError } from './args.js';
import { exportModel, ExportError } from '../train/export.js';
import { TrainConfigError } from '../train/config.js';

export const EXPORT_USAGE = `usage: osdface export --checkpoint <run folder | checkpoint file> -o <model dir> [options]

Writes a model directory from a training run of \`osdface train\`: its latest checkpoint (or the
checkpoint file given, from <run folder>/checkpoints/), with the networks rebuilt from the run
folder's config.json. The directory loads like a converted one:
  osdface restore photo.jpg -o out/ --model <model dir>

options:
  --checkpoint <path>  a run folder (its 'out'), or a step-N.safetensors file in its checkpoints/
  -o, --out <dir>      the model directory to write (written atomically)
  --name <name>        the architecture name recorded in manifest.json (default osdface-trained)
  --fp16               store the weights as float16 (half the size; upcast to float32 on load)
  --low-frequency-radius <r>
                       restored faces keep the input's colours and shading at scales over about
                       r pixels (out + blur(input - out), a blur of sigma ~ r; the packaged model
                       uses 16); left out: the network's output as it is
  --mirror-ensemble    restore every face as it is and mirrored, and average the two (twice the
                       network's time; the packaged model leaves it off)
  --force              replace an existing model directory at -o
  -h, --help           this help

exit codes: 0 exported, 1 the export failed, 2 usage error
`;

export async function main(argv: string[]): Promise<number> {
  const log = (msg: string) => process.stderr.write(`osdface export: ${msg}\n`);
  let flags;
  try {
    ({ flags } = parseFlags(argv, {
      help: { kind: 'bool', short: 'h' }, checkpoint: { kind: 'string' }, out: { kind: 'string', short: 'o' }, name: { kind: 'string' }, force: { kind: 'bool' }, fp16: { kind: 'bool' }, 'low-frequency-radius': { kind: 'number' }, 'mirror-ensemble': { kind: 'bool' },
    }));
    if (flags.has('help')) {
      process.stdout.write(EXPORT_USAGE);
      return 0;
    }
    if (!flags.has('checkpoint')) throw new ArgumentError('--checkpoint <run folder | checkpoint file> is required');
    if (!flags.has('out')) throw new ArgumentError('-o <model dir> is required');
    const radius = flags.get('low-frequency-radius');
    if (radius !== undefined && !(Number.isInteger(radius) && (radius as number) >= 1)) {
      throw new ArgumentError(`--low-frequency-radius must be a whole number of pixels, 1 or more, got ${String(radius)}`);
    }
  } catch (e) {
    if (!(e instanceof ArgumentError)) throw e;
    return reportUsageError('export', e.message);
  }
  try {
    const m = exportModel({
      checkpoint: flags.get('checkpoint') as string, out: flags.get('out') as string, name: flags.get('name') as string | undefined, force: flags.has('force'), float16Weights: flags.has('fp16'),
      output: {
        ...(flags.has('low-frequency-radius') ? { lowFrequencyFromInput: { radius: flags.get('low-frequency-radius') as number } } : {}),
        ...(flags.has('mirror-ensemble') ? { mirrorEnsemble: true } : {}),
      },
      onProgress: (step, done, total) => log(`[${Math.min(done + 1, total)}/${total}] ${step}`),
    });
    process.stdout.write(`${flags.get('out')}\n`);
    log(`exported ${m.architecture} at training step ${m.step}`);
    return 0;
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return e instanceof ExportError || e instanceof TrainConfigError ? 2 : 1;
  }
}
