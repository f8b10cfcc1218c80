// After `vite build`: lists every file of web/dist and of the packaged model in precache.json (what the service worker
// caches on install, for offline use) and stamps the build's version into sw.js.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist');
const files = [];
const hash = crypto.createHash('sha256');
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else {
      const rel = path.relative(dist, p).split(path.sep).join('/');
      if (rel === 'sw.js' || rel === 'precache.json') continue;
      files.push(rel);
      const st = fs.statSync(p);
      hash.update(`${rel}:${st.size}:`);
      if (st.size < 4 << 20) hash.update(fs.readFileSync(p));
    }
  }
})(dist);
// The packaged model, which `osdface web` serves beside the app (src/webserve/model_files.ts).
const modelDir = path.resolve(dist, '../../models/osdface-small');
const { modelFiles, MODEL_URL_PREFIX } = await import(path.resolve(dist, '../../dist/src/webserve/model_files.js'));
for (const f of [...modelFiles(modelDir)].sort()) {
  files.push(`${MODEL_URL_PREFIX.slice(1)}${f}`);
  const st = fs.statSync(path.join(modelDir, f));
  hash.update(`${f}:${st.size}:`);
  if (f === "manifest.json") hash.update(fs.readFileSync(path.join(modelDir, f)));
}
const version = hash.digest('hex').slice(0, 16);
fs.writeFileSync(path.join(dist, 'precache.json'), JSON.stringify({ version, files: ['./', ...files] }, null, 1));
const sw = path.join(dist, 'sw.js');
fs.writeFileSync(sw, fs.readFileSync(sw, 'utf8').replaceAll('__OSDFACE_VERSION__', version));
console.log(`web/dist: ${files.length} files precached (version ${version})`);
