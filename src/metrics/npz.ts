/**
 * NumPy .npz / .npy reading: an .npz is a zip archive of .npy files (`<name>.npy`, stored or
 * deflated). The .npy format (numpy's format.py, versions 1.0 / 2.0 / 3.0): the magic
 * `\x93NUMPY`, major and minor version bytes, the header length (uint16 little-endian for v1,
 * uint32 for v2 and v3), and a header that is a Python dict literal with 'descr', 'fortran_order'
 * and 'shape' (latin-1 for v1/v2, UTF-8 for v3), padded so the data is aligned; then the raw data.
 *
 * Supported: little-endian float64 ('<f8') and float32 ('<f4'), in C or Fortran order (BasicSR's
 * niqe_pris_params.npz stores its covariance in Fortran order); they come back as float64 in C order. Anything else is refused with a WeightFileError naming the file and the array.
 */

import { WeightFileError } from '../weights/errors.js';
import { readZip } from '../weights/zip.js';
import { fortranToC } from '../weights/fortran_order.js';

export interface NpyArray {
  shape: number[];
  /** The values in C (row-major) order, as float64. */
  data: Float64Array;
  /** The stored dtype: '<f8' or '<f4'. */
  dtype: string;
  /** Whether the file stored it in Fortran (column-major) order (converted to C order in data). */
  fortranOrder: boolean;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses one .npy file's bytes. `file` and `key` name it in errors. */
export function parseNpy(bytes: Uint8Array, file: string, key?: string): NpyArray {
  const fail = (problem: string, details: { expected?: string; found?: string } = {}): never => {
    throw new WeightFileError(file, problem, { ...details, ...(key !== undefined ? { key } : {}) });
  };
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) fail('not a .npy array (no \\x93NUMPY magic)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail('truncated .npy header');
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    return fail('unsupported .npy format version', { expected: '1, 2 or 3', found: `${major}.${bytes[7]}` });
  }
  if (start + headerLen > bytes.length) fail('truncated .npy header', { expected: `${start + headerLen} bytes`, found: `${bytes.length}` });
  const header = Buffer.from(bytes.subarray(start, start + headerLen)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail(`malformed .npy header: ${header.trim()}`);
  const shape = shapeText!.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    if (!/^\d+$/.test(s)) fail(`malformed shape in .npy header: (${shapeText})`);
    return Number(s);
  });
  const count = shape.reduce((a, b) => a * b, 1);
  let itemSize: number;
  if (descr === '<f8') itemSize = 8;
  else if (descr === '<f4') itemSize = 4;
  else return fail('unsupported dtype', { expected: "'<f8' or '<f4' (little-endian float)", found: `'${descr}'` });
  const dataStart = start + headerLen;
  const need = count * itemSize;
  if (bytes.length - dataStart < need) fail('array data is truncated', { expected: `${need} bytes for shape (${shape.join(', ')})`, found: `${bytes.length - dataStart}` });
  const stored = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    stored[i] = itemSize === 8 ? view.getFloat64(dataStart + 8 * i, true) : view.getFloat32(dataStart + 4 * i, true);
  }
  const data = fortran === 'True' ? fortranToC(stored, shape) : stored;
  return { shape, data, dtype: descr!, fortranOrder: fortran === 'True' };
}

/** Reads every array of an .npz file: name (without `.npy`) -> array. */
export function readNpz(file: string): Map<string, NpyArray> {
  const out = new Map<string, NpyArray>();
  for (const entry of readZip(file)) {
    if (!entry.name.endsWith('.npy')) continue;
    const key = entry.name.slice(0, -4);
    out.set(key, parseNpy(entry.read(), file, key));
  }
  return out;
}
