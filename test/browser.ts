/**
 * Headless Chromium for the browser tests: Debian's `chromium` package (what .ci/run installs),
 * driven by playwright-core (which brings no browser of its own). `launchChromium()` returns the
 * browser, or null and the reason (for `t.skip(reason)`) when there is no Chromium to launch.
 *
 *   const { browser, reason } = await launchChromium();
 *   if (!browser) return t.skip(reason);
 *   t.after(() => browser.close());
 */
import fs from 'node:fs';
import { chromium, type Browser, type LaunchOptions } from 'playwright-core';

/** Environment variable naming another Chromium executable to use. */
export const CHROMIUM_ENV = 'OSDFACE_CHROMIUM';

/** Where Debian's chromium package (and a few other distributions) put the executable. */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

/** The Chromium executable to launch, or null with the reason there is none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): { path: string; reason?: undefined } | { path: null; reason: string } {
  const given = env[CHROMIUM_ENV];
  if (given) {
    return fs.existsSync(given) ? { path: given } : { path: null, reason: `${CHROMIUM_ENV}=${given} does not exist` };
  }
  const found = CANDIDATES.find((p) => fs.existsSync(p));
  return found !== undefined
    ? { path: found }
    : { path: null, reason: `no Chromium found (looked at ${CANDIDATES.join(', ')}); install Debian's package: apt-get install -y chromium (or set ${CHROMIUM_ENV})` };
}

/**
 * Flags for a headless Chromium in CI: no sandbox when running as root (Chromium refuses to start
 * otherwise), /tmp instead of a small /dev/shm. Playwright adds its own (no first-run, no
 * background networking, ...).
 */
export function chromiumArgs(extra: readonly string[] = []): string[] {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return [...(root ? ['--no-sandbox'] : []), '--disable-dev-shm-usage', ...extra];
}

export interface LaunchResult {
  browser: Browser | null;
  /** Why browser is null. */
  reason?: string;
}

/** Launches headless Chromium; `args` are added to chromiumArgs() (e.g. '--enable-unsafe-webgpu'). */
export async function launchChromium(opts: { args?: readonly string[]; launch?: Omit<LaunchOptions, 'executablePath' | 'args'> } = {}): Promise<LaunchResult> {
  const exe = findChromium();
  if (exe.path === null) return { browser: null, reason: exe.reason };
  try {
    const browser = await chromium.launch({ headless: true, ...opts.launch, executablePath: exe.path, args: chromiumArgs(opts.args) });
    return { browser };
  } catch (e) {
    return { browser: null, reason: `${exe.path} did not start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
  }
}
