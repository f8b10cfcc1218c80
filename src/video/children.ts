/**
 * The ffmpeg processes and partial output files of the video restores in progress, so that an
 * exit by any route (an error, a second Ctrl-C that exits at once) kills the processes and
 * removes the files synchronously: nothing half-written is left in the output folder.
 */
import fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';

/**
 * ffmpeg runs in its own process group (not on Windows), so a Ctrl-C at the terminal reaches
 * osdface only, which stops after the current frame and then kills ffmpeg itself; otherwise
 * ffmpeg would get the SIGINT too and stop mid-frame with an error of its own.
 */
export const OWN_GROUP = process.platform !== 'win32';

const children = new Set<ChildProcess>();
const partials = new Set<string>();
let hooked = false;

function cleanUp(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  children.clear();
  for (const f of partials) fs.rmSync(f, { force: true });
  partials.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanUp);
}

/** Kills `proc` if this process exits while it runs. */
export function trackChild(proc: ChildProcess): void {
  hook();
  children.add(proc);
  proc.on('close', () => children.delete(proc));
}

/** Removes `file` if this process exits before `release(file)`. */
export function trackPartial(file: string): void {
  hook();
  partials.add(file);
}

export function releasePartial(file: string): void {
  partials.delete(file);
}
