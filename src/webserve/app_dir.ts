/**
 * Where the built browser app is: `--app-dir`, else $OSDFACE_WEB_DIR, else `<package root>/web/dist`
 * (what `npm run build:web` writes and the package ships). A missing or unbuilt folder is an
 * AppDirError that says what to do: build it in a source checkout, reinstall otherwise.
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from './package_root.js';

export const APP_DIR_ENV = 'OSDFACE_WEB_DIR';

/** The built app folder inside a package root. */
export const BUILT_APP = path.join('web', 'dist');

export class AppDirError extends Error {
  constructor(readonly dir: string, detail: string) {
    super(`${dir}: ${detail}`);
    this.name = 'AppDirError';
  }
}

/** A source checkout has the TypeScript sources (the package ships only dist/) or the app's sources. */
function isSourceCheckout(root: string): boolean {
  if (fs.existsSync(path.join(root, 'src', 'cli', 'main.ts'))) return true;
  return ['package.json', 'index.html', 'vite.config.ts', 'vite.config.js', 'src'].some((f) => fs.existsSync(path.join(root, 'web', f)));
}

export interface AppDirChoice {
  /** An explicit folder (--app-dir). */
  given?: string;
  /** The environment to read OSDFACE_WEB_DIR from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** The package root (default: this installation's). */
  root?: string;
}

/** The built app folder to serve, resolved and checked (it exists and has an index.html). */
export function resolveAppDir(choice: AppDirChoice = {}): string {
  const env = choice.env ?? process.env;
  const fromEnv = env[APP_DIR_ENV];
  if (choice.given !== undefined || (fromEnv !== undefined && fromEnv !== '')) {
    const dir = path.resolve(choice.given ?? fromEnv!);
    const source = choice.given !== undefined ? '--app-dir' : APP_DIR_ENV;
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new AppDirError(dir, `the web app folder (from ${source}) does not exist or is not a folder`);
    if (!fs.existsSync(path.join(dir, 'index.html'))) throw new AppDirError(dir, `the web app folder (from ${source}) has no index.html: give the folder a web build wrote (web/dist after \`npm run build:web\`)`);
    return dir;
  }
  const root = choice.root ?? packageRoot();
  const dir = path.join(root, BUILT_APP);
  if (fs.existsSync(path.join(dir, 'index.html'))) return dir;
  if (isSourceCheckout(root)) {
    throw new AppDirError(dir, `the web app is not built in this source checkout; run \`npm run build:web\` in ${root} first, then \`npx osdface web\` again`);
  }
  throw new AppDirError(dir, 'the built web app is missing from this installation; reinstall osdface (`npm install osdface --onnxruntime-node-install=skip`)');
}
