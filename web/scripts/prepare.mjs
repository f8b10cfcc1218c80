// Prepares web/public/ for `vite build` (run by `npm run build:web` after `tsc`): the RetinaFace
// graph built from the shipped weights (as Node builds it at load time) and onnxruntime-web's WASM
// runtime, so the page loads everything from its own origin. These generated folders are git-ignored.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pub = path.join(root, 'web/public');
const { loadTorchCheckpoint } = await import(path.join(root, 'dist/src/weights/torch.js'));
const { buildRetinaFaceMnet } = await import(path.join(root, 'dist/src/face/retinaface_net.js'));
const { defaultRetinaFaceWeights } = await import(path.join(root, 'dist/src/face/retinaface.js'));

function writeAtomic(file, bytes) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}

// 1. RetinaFace graph
const weights = defaultRetinaFaceWeights();
writeAtomic(path.join(pub, 'detector/retinaface.onnx'), buildRetinaFaceMnet(loadTorchCheckpoint(weights), weights));

// 2. the packaged model is not copied: `osdface web` serves models/osdface-small itself under
// /models/osdface-small/ (src/webserve/model_files.ts), so the package holds one copy.
fs.rmSync(path.join(pub, 'models'), { recursive: true, force: true });

// 3. onnxruntime-web's runtime (the JSEP build: WASM and WebGPU)
const require = createRequire(import.meta.url);
const ortDist = path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm'));
const ortDst = path.join(pub, 'ort');
fs.rmSync(ortDst, { recursive: true, force: true });
fs.mkdirSync(ortDst, { recursive: true });
for (const f of ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']) fs.copyFileSync(path.join(ortDist, f), path.join(ortDst, f));
console.log('web/public prepared: detector/retinaface.onnx, ort/');
