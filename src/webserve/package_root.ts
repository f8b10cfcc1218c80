/** The osdface package root, where the built web app (web/dist) and the packaged model (models/) live. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** `<package root>`, from dist/src/webserve/package_root.js. */
export function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
}
