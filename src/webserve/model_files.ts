/**
 * The packaged model, served read-only to the page so the app needs no copy of it: exactly the
 * files its manifest names (manifest.json, each graph and its external data, the codebook, the
 * fp32 VAE graphs if any, the documents), under MODEL_URL_PREFIX.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MANIFEST_FILE, readManifest } from '../pipeline/manifest.js';

/** Where the page finds the packaged default model: `<prefix>manifest.json` and the files it lists. */
export const MODEL_URL_PREFIX = '/models/osdface-small/';

/** The file names (relative to the model directory) that may be served: the manifest's, present on disk. */
export function modelFiles(dir: string): Set<string> {
  const m = readManifest(dir);
  const graphs = [...Object.values(m.graphs), ...(m.vaeGraphs ? [m.vaeGraphs.encoder, m.vaeGraphs.decoder] : [])];
  const names = [MANIFEST_FILE, m.codebookFile, ...graphs, ...graphs.map((g) => `${g}.data`), ...(m.documents ?? [])];
  return new Set(names.map((n) => n.replaceAll('\\', '/')).filter((n) => fs.existsSync(path.join(dir, n))));
}
