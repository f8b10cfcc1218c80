/** The converted model directory's manifest.json: what was converted, from what, and how to run it (reading it from disk; the type and checks: ./manifest_core.ts). */
import fs from 'node:fs';
import path from 'node:path';
import { HOW_TO_CONVERT, MANIFEST_FILE, ModelDirError, parseManifest, type Manifest } from './manifest_core.js';

export {
  HOW_TO_CONVERT, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, ModelDirError, outputSettings, parseManifest, type Manifest, type OutputSettings, type SourceFile,
} from './manifest_core.js';

export function readManifest(dir: string): Manifest {
  if (!fs.existsSync(dir)) throw new ModelDirError(dir, `model directory does not exist; ${HOW_TO_CONVERT}`);
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(file)) throw new ModelDirError(dir, `no ${MANIFEST_FILE}: this is not a converted osdface model (or its conversion did not finish); ${HOW_TO_CONVERT}`);
  const m = parseManifest(fs.readFileSync(file, 'utf8'), dir);
  for (const f of [...Object.values(m.graphs), m.codebookFile]) {
    if (!fs.existsSync(path.join(dir, f))) throw new ModelDirError(dir, `${f} is missing; convert the model again`);
  }
  return m;
}
