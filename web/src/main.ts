/** The page: picking a model and an image, progress, the before/after view, the faces, the download. */
import { simd } from 'wasm-feature-detect';
import type { DecodedImage, RgbImage } from '../../src/image/pixels.js';
import { chooseBackend, webgpuUnavailable, type Backend, type BackendName } from './ort_web.js';
import { Engine, pickedModelFiles, urlModelFiles, type Progress } from './engine.js';
import { ACCEPTED, decodeFile, encodePng, toCanvas, toImageData } from './images.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

type State = 'loading' | 'ready' | 'working' | 'done' | 'error';
function setState(s: State): void {
  document.body.dataset.state = s;
}

const progress: Progress = (label, fraction) => {
  $('stage').textContent = label;
  const bar = $<HTMLProgressElement>('progress');
  if (fraction === undefined) bar.removeAttribute('value');
  else bar.value = fraction;
};

/** A message a person understands, for anything thrown on the way. */
function explain(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError && /memory|allocation|Array buffer/i.test(msg)) return `Out of memory: this browser could not allocate enough memory (${msg}). Close other tabs, or try a smaller photo.`;
  if (/out of memory|failed to allocate|memory access out of bounds|Aborted\(OOM\)|bad_alloc/i.test(msg)) return `Out of memory while restoring (${msg}). Close other tabs, or try a smaller photo.`;
  return msg;
}

function showError(e: unknown): void {
  const el = $('error');
  el.textContent = explain(e);
  el.hidden = false;
  setState('error');
  console.error(e);
}

let engine: Engine | null = null;
let backend: Backend | null = null;
let result: (RgbImage & { alpha?: Uint8Array }) | null = null;
let resultName = 'restored.png';

async function loadEngine(files = urlModelFiles(new URL('models/osdface-small/', document.baseURI).href)): Promise<void> {
  setState('loading');
  $('error').hidden = true;
  const t0 = performance.now();
  const old = engine;
  engine = null;
  await old?.dispose();
  engine = await Engine.load(backend!, files, new URL('detector/retinaface.onnx', document.baseURI).href, progress);
  (globalThis as unknown as { osdface: unknown }).osdface = { engine, decodeFile };
  $('model-name').textContent = `${engine.manifest.architecture ?? 'osdface-sd21'} (${/\/models\/osdface-small\/$/.test(files.name) ? 'packaged' : `folder ${files.name}`}, ${engine.manifest.dtype})`;
  progress(`Model ready (${((performance.now() - t0) / 1000).toFixed(1)} s). Open a photo.`, 1);
  (window as unknown as { osdfaceTimings: Record<string, number> }).osdfaceTimings.modelReady = performance.now();
  setState('ready');
}

function drawResult(before: DecodedImage, after: RgbImage & { alpha?: Uint8Array }): void {
  for (const [id, img] of [['before', before], ['after', after]] as const) {
    const c = $<HTMLCanvasElement>(id);
    c.width = img.width;
    c.height = img.height;
    c.getContext('2d')!.putImageData(toImageData(img), 0, 0);
  }
  updateSlider();
  $('result').hidden = false;
}

function updateSlider(): void {
  const v = Number($<HTMLInputElement>('slider').value);
  $('after').style.clipPath = `inset(0 0 0 ${v}%)`;
}

function showFaces(faces: { crop?: RgbImage; restoredCrop?: RgbImage }[]): void {
  const box = $('faces');
  box.replaceChildren();
  for (const f of faces) {
    if (!f.crop || !f.restoredCrop) continue;
    const div = document.createElement('div');
    div.className = 'face';
    div.append(toCanvas(f.crop), toCanvas(f.restoredCrop));
    box.append(div);
  }
  $('faces-title').hidden = box.childElementCount === 0;
}

async function run(file: File): Promise<void> {
  if (!engine) return;
  $('error').hidden = true;
  $('notices').hidden = true;
  setState('working');
  const t0 = performance.now();
  try {
    if (file.type && !ACCEPTED.includes(file.type)) throw new Error(`${file.name}: not an image this page can read (${file.type}); open a JPEG, PNG or WebP file`);
    progress('Reading the image');
    const img = await decodeFile(file);
    const mode = (document.querySelector('input[name=mode]:checked') as HTMLInputElement).value;
    // The same knob as --fidelity (src/pipeline/fidelity.ts): 0 the model as trained, 1 the input.
    const fidelity = Number($<HTMLInputElement>('fidelity').value) / 100;
    resultName = `${file.name.replace(/\.[^.]*$/, '')}-restored.png`;
    if (mode === 'aligned') {
      result = await engine.restoreAligned(img, progress, fidelity);
      showFaces([]);
    } else {
      const res = await engine.restorePhoto(img, progress, fidelity);
      result = res.image;
      showFaces(res.faces);
      if (!res.faces.some((f) => f.status === 'restored')) {
        throw new Error(res.faces.length === 0
          ? `No face found in ${file.name}. If it is a face crop already aligned like FFHQ, choose "Aligned face crop".`
          : `No face restored in ${file.name}: ${res.notices.join('; ')}`);
      }
      if (res.notices.length) {
        $('notices').textContent = res.notices.join(' · ');
        $('notices').hidden = false;
      }
    }
    drawResult(img, result);
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    $('timing').textContent = `${s} s on ${backend!.label}`;
    (window as unknown as { osdfaceTimings: Record<string, number> }).osdfaceTimings.lastRestoreMs = performance.now() - t0;
    setState('done');
  } catch (e) {
    showError(e);
  }
}

async function main(): Promise<void> {
  (window as unknown as { osdfaceTimings: Record<string, number> }).osdfaceTimings = { start: performance.timeOrigin };
  if (!(await simd())) {
    $('backend').textContent = 'none';
    throw new Error('This browser has no WebAssembly SIMD, which the restorer needs. Use a current Chrome, Edge, Firefox or Safari (16.4 or later).');
  }
  if ('serviceWorker' in navigator && params.get('sw') !== '0') {
    navigator.serviceWorker.register('./sw.js').catch((e) => console.warn('service worker not registered:', e));
  }
  const want = (params.get('backend') ?? 'auto') as BackendName | 'auto';
  const threads = params.get('threads') ? Number(params.get('threads')) : undefined;
  backend = await chooseBackend(want, threads);
  $('backend').textContent = backend.label;
  $('backend').title = webgpuUnavailable ? `WebGPU not used: ${webgpuUnavailable}` : '';
  document.body.dataset.backend = backend.name;
  document.body.dataset.threads = String(backend.threads);
  if (webgpuUnavailable) document.body.dataset.webgpu = webgpuUnavailable;

  const fileInput = $<HTMLInputElement>('file');
  fileInput.addEventListener('change', () => { if (fileInput.files?.[0]) void run(fileInput.files[0]); });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) void run(f);
  });
  $('slider').addEventListener('input', updateSlider);
  $('download').addEventListener('click', async () => {
    if (!result) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(await encodePng(result));
    a.download = resultName;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  });
  const fidelity = $<HTMLInputElement>('fidelity');
  fidelity.addEventListener('input', () => { $('fidelity-value').textContent = (Number(fidelity.value) / 100).toFixed(2); });
  const modelDir = $<HTMLInputElement>('model-dir');
  modelDir.addEventListener('change', () => {
    if (!modelDir.files?.length) return;
    loadEngine(pickedModelFiles(modelDir.files)).catch(showError);
  });
  await loadEngine();
}

main().catch(showError);
