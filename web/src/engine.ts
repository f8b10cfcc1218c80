/**
 * What the page runs: the same modules as Node (src/restorer.ts, src/photo/photo_core.ts,
 * src/face/retinaface_core.ts, src/pipeline/*) on onnxruntime-web sessions and canvas images.
 * Nothing here is pipeline logic: it wires the browser's I/O into the shared code.
 */
import type { DecodedImage, RgbImage } from '../../src/image/pixels.js';
import { RetinaFaceCore } from '../../src/face/retinaface_core.js';
import { loadModelFiles, type ModelFiles, type ModelLoadProgress } from '../../src/pipeline/model_files.js';
import type { Manifest } from '../../src/pipeline/manifest_core.js';
import type { OSDFacePipeline } from '../../src/pipeline/pipeline.js';
import { restorePhotoWith, upscaleWithResize, type RestorePhotoResult } from '../../src/photo/photo_core.js';
import { FaceRestorer, type RestoredImage } from '../../src/restorer.js';
import type { Backend } from './ort_web.js';
import { resizeAlpha, resizeRgb } from './images.js';

export type Progress = (label: string, fraction?: number) => void;

/** The packaged model's files, fetched from beside the page (the service worker serves them offline). */
export function urlModelFiles(base: string): ModelFiles {
  return {
    name: base,
    bytes: async (file, onProgress) => {
      const res = await fetch(new URL(file, base));
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`${base}${file}: HTTP ${res.status}`);
      const size = Number(res.headers.get('content-length') ?? 0);
      if (!res.body || !onProgress || !size) return new Uint8Array(await res.arrayBuffer());
      const out = new Uint8Array(size);
      const reader = res.body.getReader();
      let loaded = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.length > out.length) throw new Error(`${base}${file}: more bytes than its Content-Length`);
        out.set(value, loaded);
        loaded += value.length;
        onProgress(loaded, size);
      }
      return loaded === size ? out : out.subarray(0, loaded);
    },
  };
}

/** A converted model directory the user picked (<input webkitdirectory>): read in the page, never uploaded. */
export function pickedModelFiles(list: FileList | File[]): ModelFiles {
  const byName = new Map<string, File>();
  let root = 'picked folder';
  for (const f of Array.from(list)) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    const parts = rel.split('/');
    if (parts.length > 1) root = parts[0]!;
    // files directly in the picked folder, by name (the optimized/ cache and sub-folders are not needed)
    if (parts.length <= 2) byName.set(parts[parts.length - 1]!, f);
  }
  return {
    name: root,
    bytes: async (file) => {
      const f = byName.get(file);
      return f ? new Uint8Array(await f.arrayBuffer()) : null;
    },
  };
}

function describeLoad(p: ModelLoadProgress): [string, number] {
  const frac = (p.done + (p.size ? (p.loaded ?? 0) / p.size : 0)) / p.total;
  if (p.stage === 'download') {
    const mb = p.size ? ` (${((p.loaded ?? 0) / 1e6).toFixed(1)} / ${(p.size / 1e6).toFixed(1)} MB)` : '';
    return [`Model: downloading ${p.file}${mb}`, frac];
  }
  return [p.file ? `Model: compiling ${p.file}` : 'Model: ready', frac];
}

export class Engine {
  private detector: RetinaFaceCore | null = null;

  private constructor(
    readonly backend: Backend,
    readonly manifest: Manifest,
    private readonly pipeline: OSDFacePipeline,
    private readonly restorer: FaceRestorer<DecodedImage>,
    private readonly detectorUrl: string,
  ) {}

  static async load(backend: Backend, files: ModelFiles, detectorUrl: string, progress: Progress): Promise<Engine> {
    const { pipeline, manifest } = await loadModelFiles(files, backend.createSession, {
      onProgress: (p) => progress(...describeLoad(p)),
    });
    const restorer = new FaceRestorer<DecodedImage>(pipeline, manifest, {
      decode: async (img) => ('sourceFormat' in img ? (img as DecodedImage) : { ...img, sourceFormat: 'raw' }),
      resize: resizeRgb,
      resizeAlpha,
      randomSeed: () => crypto.getRandomValues(new Uint32Array(1))[0]! % 0xffffffff,
    }, false);
    return new Engine(backend, manifest, pipeline, restorer, detectorUrl);
  }

  get processSize(): number {
    return this.pipeline.settings.processSize;
  }

  private async loadDetector(progress: Progress): Promise<RetinaFaceCore> {
    if (!this.detector) {
      progress('Face detector: downloading and compiling');
      const bytes = new Uint8Array(await (await fetch(this.detectorUrl)).arrayBuffer());
      this.detector = new RetinaFaceCore(await this.backend.createSession(bytes));
    }
    return this.detector;
  }

  /** The faces RetinaFace finds in `img` (what restorePhoto starts from; also handy in the console). */
  async detect(img: RgbImage, progress: Progress = () => undefined) {
    return (await this.loadDetector(progress)).detect(img);
  }

  /** An aligned face crop (any size; squared by edge padding as in Node's `restore`). */
  async restoreAligned(img: DecodedImage, progress: Progress, fidelity = 0): Promise<RestoredImage> {
    progress('Restoring the face', 0);
    const [out] = await this.restorer.restoreList([img], { latent: 'mode', fidelity });
    progress('Done', 1);
    return out!;
  }

  /** A whole photo: detect (RetinaFace), align, restore each face, paste back (as Node's restorePhoto). */
  async restorePhoto(img: DecodedImage, progress: Progress, fidelity = 0): Promise<RestorePhotoResult> {
    const detector = await this.loadDetector(progress);
    let nFaces = 0;
    let done = 0;
    const res = await restorePhotoWith(img, async (crops: RgbImage[]) => {
      nFaces = crops.length;
      const out: RgbImage[] = [];
      for (const crop of crops) {
        progress(`Restoring face ${done + 1} of ${nFaces}`, done / nFaces);
        out.push(...(await this.restorer.restoreCrops([crop], 'mode', undefined, 1, fidelity)));
        done++;
      }
      progress('Pasting the faces back', 1);
      return out;
    }, { faceSize: this.processSize, saveFaces: true }, {
      detect: async (image, opts) => {
        progress('Detecting faces');
        return detector.detect(image, opts);
      },
      upscale: (image, factor) => upscaleWithResize(image, factor),
    });
    progress('Done', 1);
    return res;
  }

  async dispose(): Promise<void> {
    await this.pipeline.dispose();
    await this.detector?.dispose();
  }
}
