/** The training loop: steps, progress, periodic evaluation, samples, curve and checkpoints, resume. */
import fs from 'node:fs';
import path from 'node:path';
import { configToJson, type TrainConfig } from './config.js';
import { FaceDataset } from './data.js';
import { writeFileAtomic } from '../degrade/args.js';
import { Trainer, type StepLog } from './trainer.js';

export interface TrainOptions {
  /** Stop after this step even if the config asks for more (for tests and staged runs). */
  stopAt?: number;
  onLog?: (line: string) => void;
  /**
   * A weights-only file (Trainer.saveWeights, float16) kept beside the full checkpoints: written at
   * every checkpoint, and read to go on when the run folder has no checkpoint (a fresh machine with
   * the committed weights). The optimizer moments then start again from zero.
   */
  weightsFile?: string;
  /** Stop at the first step that ends after this time (ms since the epoch), with a checkpoint there: a run that must end with a working session. */
  deadline?: number;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

export async function train(cfg: TrainConfig, opts: TrainOptions = {}): Promise<{ trainer: Trainer; logs: StepLog[] }> {
  const say = opts.onLog ?? ((l: string) => process.stderr.write(`${l}\n`));
  fs.mkdirSync(cfg.out, { recursive: true });
  // The resolved configuration, so `osdface export` can rebuild the networks from the run folder alone.
  writeFileAtomic(path.join(cfg.out, 'config.json'), `${JSON.stringify(configToJson(cfg), null, 2)}\n`);
  const ckptDir = path.join(cfg.out, 'checkpoints');
  const logFile = path.join(cfg.out, 'log.jsonl');
  const { train: trainDir, val: valDir, holdout, size } = cfg.data;
  say(`loading images from ${trainDir}${valDir ? ` and ${valDir}` : ` (the last ${holdout} held out for validation)`} at ${size}px`);
  const data = await FaceDataset.load(trainDir, size, Infinity, { holdout, part: 'train' });
  const val = valDir ? await FaceDataset.load(valDir, size, cfg.data.valImages) : await FaceDataset.load(trainDir, size, cfg.data.valImages, { holdout, part: 'holdout' });
  const trainer = new Trainer(cfg, data, val);
  let resumed = trainer.loadCheckpoint(ckptDir);
  if (resumed === 0 && opts.weightsFile && fs.existsSync(opts.weightsFile)) {
    resumed = trainer.loadWeights(opts.weightsFile);
    say(`going on from the weights of step ${resumed} in ${opts.weightsFile} (optimizer moments restart from zero)`);
  }
  if (resumed > 0) {
    // The log keeps only what the checkpoint already covers; later lines are recomputed.
    const kept = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepLog).filter((l) => l.step <= resumed) : [];
    trainer.logs.push(...kept);
    fs.writeFileSync(logFile, kept.map((l) => JSON.stringify(l) + '\n').join(''));
    say(`resuming from step ${resumed} (${ckptDir})`);
  } else {
    fs.writeFileSync(logFile, '');
  }
  await trainer.init();
  const params = [...trainer.params.values()].reduce((s, p) => s + p.length, 0);
  say(`training ${params.toLocaleString('en-US')} parameters (${cfg.trainable.mode}), ${data.length} training images, ${val.length} validation images`);
  const last = Math.min(cfg.steps, opts.stopAt ?? cfg.steps);
  const started = performance.now();
  const firstStep = trainer.step;
  try {
    while (trainer.step < last && Date.now() < (opts.deadline ?? Infinity)) {
      const log = await trainer.trainStep();
      const s = log.step;
      if (s % cfg.evalEvery === 0 || s === cfg.steps) {
        const v = await trainer.evaluate();
        log.val = { loss: v.loss, psnr: v.psnr, inputPsnr: v.inputPsnr };
        if (s % cfg.sampleEvery === 0 || s === cfg.steps) {
          fs.mkdirSync(path.join(cfg.out, 'samples'), { recursive: true });
          await trainer.writeSamples(path.join(cfg.out, 'samples', `step-${String(s).padStart(7, '0')}.png`), v.out);
        }
      }
      fs.appendFileSync(path.join(cfg.out, 'log.jsonl'), JSON.stringify(log) + '\n');
      const elapsed = (performance.now() - started) / 1000;
      const eta = (elapsed / (s - firstStep)) * (last - s);
      const status = `step ${s}/${cfg.steps}  loss ${log.loss.toFixed(5)}  lr ${log.lr.toExponential(2)}  |g| ${log.gradNorm.toFixed(3)}  ${log.imagesPerSecond.toFixed(1)} img/s  ETA ${fmtTime(eta)}`;
      const val = log.val ? `  val loss ${log.val.loss.toFixed(5)}  val PSNR ${log.val.psnr.toFixed(2)} dB (degraded input ${log.val.inputPsnr.toFixed(2)} dB)` : '';
      if (!opts.onLog && process.stderr.isTTY) {
        // On a terminal: one progress bar redrawn in place; evaluations stay on their own lines.
        const width = 24;
        const filled = Math.round((width * s) / cfg.steps);
        process.stderr.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${status}`);
        if (val || s === last) process.stderr.write(`${val}\n`);
      } else {
        say(status + val);
      }
      if (s % cfg.checkpointEvery === 0 || s === last || Date.now() >= (opts.deadline ?? Infinity)) {
        trainer.saveCheckpoint(ckptDir);
        if (opts.weightsFile) trainer.saveWeights(opts.weightsFile);
        await trainer.writeCurve(path.join(cfg.out, 'loss.png'));
      }
    }
  } finally {
    await trainer.dispose();
    await Promise.all([data.dispose(), val.dispose()]);
  }
  return { trainer, logs: trainer.logs };
}
