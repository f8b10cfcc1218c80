/**
 * Reader for TensorFlow.js weight files (a `*-weights_manifest.json` plus its `.bin` shards), as
 * shipped by @vladmandic/face-api. Only the weights are read: the networks themselves are built
 * here as ONNX graphs (src/face/nets.ts), so no TensorFlow.js runtime is needed.
 *
 * Format: the manifest is a list of groups, each with `paths` (binary shards, concatenated in
 * order) and `weights` (name, shape, dtype, optional `quantization`). Weights are laid out back
 * to back; a quantized weight stores one uint8 (or uint16) per value, dequantized as
 * `min + scale * q`, or IEEE float16 values.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface NamedWeight {
  shape: number[];
  data: Float32Array;
}

export interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

/** An error in a weight file; the message starts with the file. */
export class TfjsWeightError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'TfjsWeightError';
  }
}

function float16ToFloat32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Reads every weight of `<dir>/<name>-weights_manifest.json` as float32. */
export function readTfjsWeights(dir: string, name: string): Map<string, NamedWeight> {
  const manifestFile = path.join(dir, `${name}-weights_manifest.json`);
  let groups: TfjsWeightGroups;
  try {
    groups = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  } catch (e) {
    throw new TfjsWeightError(manifestFile, `cannot read weights manifest: ${(e as Error).message.split('\n')[0]}`);
  }
  return decodeTfjsWeights(dir, groups, manifestFile);
}

/** A list of tfjs weight groups (a manifest, or a layers model.json's `weightsManifest`). */
export type TfjsWeightGroups = { paths: string[]; weights: ManifestEntry[] }[];

/**
 * Reads the weights of manifest `groups` (shards relative to `dir`) as float32; `file` names the
 * manifest in errors.
 */
export function decodeTfjsWeights(dir: string, groups: TfjsWeightGroups, file: string): Map<string, NamedWeight> {
  const manifestFile = file;
  if (!Array.isArray(groups)) throw new TfjsWeightError(manifestFile, 'not a weights manifest (expected a list of groups)');
  const out = new Map<string, NamedWeight>();
  for (const group of groups) {
    const shards = group.paths.map((p) => fs.readFileSync(path.join(dir, p)));
    const buf = Buffer.concat(shards);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let offset = 0;
    for (const w of group.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      const q = w.quantization;
      const bytesPer = q ? (q.dtype === 'uint8' ? 1 : 2) : w.dtype === 'float32' || w.dtype === 'int32' ? 4 : 0;
      if (bytesPer === 0) throw new TfjsWeightError(manifestFile, `weight ${w.name}: unsupported dtype ${w.dtype}`);
      if (offset + n * bytesPer > buf.byteLength) {
        throw new TfjsWeightError(manifestFile, `weight ${w.name}: the binary shards end at byte ${buf.byteLength}, the weight needs up to ${offset + n * bytesPer}`);
      }
      const data = new Float32Array(n);
      if (q && (q.dtype === 'uint8' || q.dtype === 'uint16')) {
        const scale = q.scale ?? 1;
        const min = q.min ?? 0;
        for (let i = 0; i < n; i++) {
          const v = q.dtype === 'uint8' ? view.getUint8(offset + i) : view.getUint16(offset + 2 * i, true);
          data[i] = min + scale * v;
        }
      } else if (q && q.dtype === 'float16') {
        for (let i = 0; i < n; i++) data[i] = float16ToFloat32(view.getUint16(offset + 2 * i, true));
      } else if (q) {
        throw new TfjsWeightError(manifestFile, `weight ${w.name}: unsupported quantization ${q.dtype}`);
      } else if (w.dtype === 'float32') {
        for (let i = 0; i < n; i++) data[i] = view.getFloat32(offset + 4 * i, true);
      } else {
        for (let i = 0; i < n; i++) data[i] = view.getInt32(offset + 4 * i, true);
      }
      offset += n * bytesPer;
      out.set(w.name, { shape: w.shape, data });
    }
    if (offset !== buf.byteLength) {
      throw new TfjsWeightError(manifestFile, `the manifest accounts for ${offset} bytes, the binary shards hold ${buf.byteLength}`);
    }
  }
  return out;
}
