#!/usr/bin/env node
/** `osdface train --config <json> [--stop-at N]`: train (or resume) as the config says. */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readTrainConfig, TrainConfigError } from '../train/config.js';
import { train } from '../train/run.js';

const USAGE = 'usage: osdface train --config <config.json> [--stop-at <step>]\n' +
  '  trains the OSDFace-shaped model the config describes; re-running resumes from its last checkpoint\n';

export async function main(argv: string[]): Promise<number> {
  let config: string | undefined;
  let stopAt: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a === '--config') config = argv[++i];
    else if (a === '--stop-at') {
      stopAt = Number(argv[++i]);
      if (!Number.isInteger(stopAt) || stopAt < 1) {
        process.stderr.write(`--stop-at needs a positive whole number\n${USAGE}`);
        return 2;
      }
    } else {
      process.stderr.write(`unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (!config) {
    process.stderr.write(`--config is required\n${USAGE}`);
    return 2;
  }
  try {
    const cfg = readTrainConfig(config);
    const { logs } = await train(cfg, { stopAt });
    const lastVal = [...logs].reverse().find((l) => l.val);
    process.stdout.write(`${cfg.out}: ${logs.length} steps logged` +
      (lastVal?.val ? `; validation PSNR ${lastVal.val.psnr.toFixed(2)} dB vs degraded input ${lastVal.val.inputPsnr.toFixed(2)} dB` : '') + '\n');
    return 0;
  } catch (e) {
    process.stderr.write(`train: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof TrainConfigError ? 2 : 1;
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
