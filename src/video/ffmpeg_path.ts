/**
 * Where the ffmpeg and ffprobe executables come from: a system ffmpeg / ffprobe on PATH when there
 * is one, else the static builds that the npm packages @ffmpeg-installer/ffmpeg and
 * @ffprobe-installer/ffprobe ship inside their tarballs (nothing is downloaded, at install or at
 * run time). `OSDFACE_FFMPEG` / `OSDFACE_FFPROBE` name an executable to use instead of both.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

export type Tool = 'ffmpeg' | 'ffprobe';

export interface ToolPath {
  path: string;
  /** Where it was found: the environment variable, PATH, or the npm package. */
  source: 'env' | 'system' | 'npm';
}

const PACKAGES: Record<Tool, string> = { ffmpeg: '@ffmpeg-installer/ffmpeg', ffprobe: '@ffprobe-installer/ffprobe' };
const ENV: Record<Tool, string> = { ffmpeg: 'OSDFACE_FFMPEG', ffprobe: 'OSDFACE_FFPROBE' };

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `name` on PATH (with the PATHEXT suffixes on Windows), or null. */
export function onPath(name: string, envPath = process.env.PATH ?? ''): string | null {
  const exts = process.platform === 'win32' ? (process.env.PATHEXT ?? '.EXE').split(';') : [''];
  for (const dir of envPath.split(path.delimiter)) {
    if (dir === '') continue;
    for (const ext of exts) {
      const file = path.join(dir, name + ext);
      if (isExecutable(file)) return file;
    }
  }
  return null;
}

const cache = new Map<Tool, ToolPath>();

/** The executable to run for `tool`; throws an Error that says how to get one when there is none. */
export function toolPath(tool: Tool): ToolPath {
  const hit = cache.get(tool);
  if (hit) return hit;
  let found: ToolPath | null = null;
  const env = process.env[ENV[tool]];
  if (env !== undefined && env !== '') {
    if (!isExecutable(env)) throw new Error(`${ENV[tool]}=${env} is not an executable file`);
    found = { path: env, source: 'env' };
  }
  if (!found) {
    const sys = onPath(tool);
    if (sys) found = { path: sys, source: 'system' };
  }
  if (!found) {
    let file: string | undefined;
    let why = '';
    try {
      // CommonJS packages that pick their platform package (@ffmpeg-installer/linux-x64, ...) themselves.
      file = (createRequire(import.meta.url)(PACKAGES[tool]) as { path?: string }).path;
    } catch (e) {
      why = `: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
    }
    if (file === undefined || !fs.existsSync(file)) {
      throw new Error(`no ${tool} found: none on PATH, and the npm package ${PACKAGES[tool]} has no binary for ${process.platform}-${process.arch}${why}; install ${tool} (e.g. apt-get install ffmpeg) or set ${ENV[tool]}`);
    }
    if (!isExecutable(file)) {
      // npm may skip the package's `chmod u+x` install script; the file is executable in the tarball.
      try {
        fs.chmodSync(file, 0o755);
      } catch {
        throw new Error(`${file} (from ${PACKAGES[tool]}) is not executable; run chmod +x on it, or install ${tool} on PATH`);
      }
    }
    found = { path: file, source: 'npm' };
  }
  cache.set(tool, found);
  return found;
}
