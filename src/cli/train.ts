#!/usr/bin/env node
/** `osdface train --config <json> [--stop-at N]`: train (or resume) as the config says. */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readTrainConfig, TrainConfigError } from '../train/config.js';
import { train } from '../train/run.js';
import { ArgumentError, parseFlags, reportUsageError } from './args.js';

export const TRAIN_USAGE = `usage: osdface train --config <config.json> [--stop-at <step>]

Trains the OSDFace-shaped model the config describes; every config key is documented in README.md,
"Training" (a minimal config: { "data": { "train": "faces", "holdout": 10 }, "steps": 200, "out": "runs/tiny" }).
Re-running the same
command resumes from its last checkpoint.

options:
  --config <file>        the training config (JSON)
  --stop-at <step>       stop after this step (a checkpoint is written), e.g. to resume later
  -h, --help             this help

exit codes: 0 trained, 1 training failed, 2 usage error or invalid config.
`;

export async function main(argv: string[]): Promise<number> {
  let config: string;
  let stopAt: number | undefined;
  try {
    const { flags, positionals } = parseFlags(argv, { config: { kind: 'string' }, 'stop-at': { kind: 'int' }, help: { kind: 'bool', short: 'h' } });
    if (flags.has('help')) {
      process.stdout.write(TRAIN_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new ArgumentError(`unexpected argument '${positionals[0]}' (the config is given with --config)`);
    if (!flags.has('config')) throw new ArgumentError('--config <config.json> is required');
    config = flags.get('config') as string;
    stopAt = flags.get('stop-at') as number | undefined;
    if (stopAt !== undefined && stopAt < 1) throw new ArgumentError('--stop-at must be 1 or more');
  } catch (e) {
    if (e instanceof ArgumentError) return reportUsageError('train', e.message);
    throw e;
  }
  try {
    const cfg = readTrainConfig(config);
    const { logs } = await train(cfg, { stopAt, onLog: (line) => process.stderr.write(`osdface train: ${line}\n`) });
    const lastVal = [...logs].reverse().find((l) => l.val);
    process.stdout.write(`${cfg.out}: ${logs.length} steps logged` +
      (lastVal?.val ? `; validation PSNR ${lastVal.val.psnr.toFixed(2)} dB vs degraded input ${lastVal.val.inputPsnr.toFixed(2)} dB` : '') + '\n');
    return 0;
  } catch (e) {
    process.stderr.write(`osdface train: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof TrainConfigError ? 2 : 1;
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
