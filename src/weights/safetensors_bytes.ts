/**
 * Reading one tensor from a safetensors file held in memory (the browser's model files), with no
 * I/O: the 8-byte little-endian header length, the JSON header, the raw data. Float32 and float16
 * (upcast) tensors, which is what a model directory's codebook holds. Node reads files with
 * ./safetensors.ts instead.
 */
import type { FloatTensor } from '../tensor.js';

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The float tensor `key` of safetensors `bytes` (`name` for errors). */
export function readSafetensorsFloat(bytes: Uint8Array, key: string, name: string): FloatTensor {
  const fail = (what: string): never => { throw new Error(`${name}: ${what}`); };
  if (bytes.length < 8) fail('not a safetensors file (shorter than its header)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.length) fail(`header of ${headerLen} bytes does not fit in ${bytes.length} bytes (truncated file?)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    return fail(`header is not JSON (${(e as Error).message})`);
  }
  const info = header[key];
  if (!info) return fail(`no tensor '${key}'`);
  const [begin, end] = info.data_offsets;
  const start = 8 + headerLen + begin;
  if (start + (end - begin) > bytes.length) fail(`tensor '${key}' runs past the end of the file (truncated file?)`);
  const count = info.shape.reduce((a, b) => a * b, 1);
  const raw = bytes.slice(start, 8 + headerLen + end);
  const dv = new DataView(raw.buffer);
  const data = new Float32Array(count);
  if (info.dtype === 'F32' && raw.length === 4 * count) for (let i = 0; i < count; i++) data[i] = dv.getFloat32(4 * i, true);
  else if (info.dtype === 'F16' && raw.length === 2 * count) for (let i = 0; i < count; i++) data[i] = halfToFloat(dv.getUint16(2 * i, true));
  else fail(`tensor '${key}' is ${info.dtype} with ${raw.length} bytes for shape [${info.shape.join(', ')}]; expected F32 or F16`);
  return { dtype: 'float32', shape: [...info.shape], data };
}
