/**
 * NumPy arrays inside pickles, rebuilt as data only. FID statistics files hold them: BasicSR's
 * `inception_FFHQ_*.pth` is `torch.save(dict(name, size, mean=<ndarray>, cov=<ndarray>))`.
 *
 * How numpy pickles an array (numpy's `ndarray.__reduce__` / `__setstate__`, array_reduce and
 * array_setstate in numpy/core/src/multiarray/methods.c):
 *
 *   numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')   REDUCE -> an empty array
 *   BUILD (1, shape, dtype, is_fortran, raw_bytes)                   -> its contents
 *
 * and a dtype (`arraydescr_reduce` / `arraydescr_setstate` in descriptor.c):
 *
 *   numpy.dtype('f8', False, True)                                   REDUCE
 *   BUILD (3, '<', None, None, None, -1, -1, 0)                      -> byte order, no fields
 *
 * (numpy >= 2 spells the module `numpy._core.multiarray`.) Only these shapes of calls are
 * understood, for plain numeric dtypes; object arrays (whose "raw data" is a list of pickled
 * objects), structured dtypes and sub-arrays are refused. Nothing of numpy is ever executed: the
 * pickle's arguments are read as values and the array is decoded here.
 */

import type { Tensor } from '../tensor.js';
import { fortranToC } from './fortran_order.js';

/** What a numpy dtype string names: element size and how to read one element. */
interface NumpyKind {
  size: number;
  read(view: DataView, offset: number, littleEndian: boolean): number;
}

const KINDS: Readonly<Record<string, NumpyKind>> = {
  f8: { size: 8, read: (v, o, le) => v.getFloat64(o, le) },
  f4: { size: 4, read: (v, o, le) => v.getFloat32(o, le) },
  i8: { size: 8, read: (v, o, le) => Number(v.getBigInt64(o, le)) },
  i4: { size: 4, read: (v, o, le) => v.getInt32(o, le) },
  i2: { size: 2, read: (v, o, le) => v.getInt16(o, le) },
  i1: { size: 1, read: (v, o) => v.getInt8(o) },
  u8: { size: 8, read: (v, o, le) => Number(v.getBigUint64(o, le)) },
  u4: { size: 4, read: (v, o, le) => v.getUint32(o, le) },
  u2: { size: 2, read: (v, o, le) => v.getUint16(o, le) },
  u1: { size: 1, read: (v, o) => v.getUint8(o) },
  b1: { size: 1, read: (v, o) => (v.getUint8(o) !== 0 ? 1 : 0) },
};

/** numpy's spellings of the same dtypes in `numpy.dtype(...)` calls. */
const ALIASES: Readonly<Record<string, string>> = {
  float64: 'f8', float32: 'f4', int64: 'i8', int32: 'i4', int16: 'i2', int8: 'i1',
  uint64: 'u8', uint32: 'u4', uint16: 'u2', uint8: 'u1', bool: 'b1', d: 'f8', f: 'f4',
};

/** Raised for anything outside the understood subset; the unpickler turns it into a WeightFileError. */
export class NumpyPickleError extends Error {}

/** A `numpy.dtype` as pickled: the kind, then (through BUILD) the byte order. */
export class NumpyDType {
  /** '<' little, '>' big, '|' not applicable (1-byte types), '=' native (little here). */
  byteOrder = '=';

  private constructor(readonly name: string, readonly kind: NumpyKind) {}

  /** `numpy.dtype(descr, align, copy)`: only plain numeric type names are accepted. */
  static fromArgs(args: unknown[]): NumpyDType {
    const [descr] = args;
    if (typeof descr !== 'string') throw new NumpyPickleError(`numpy.dtype with a non-string type (${typeof descr})`);
    const name = ALIASES[descr] ?? descr;
    const kind = KINDS[name];
    if (!kind) throw new NumpyPickleError(`numpy dtype '${descr}' is not supported (only numeric dtypes: ${Object.keys(KINDS).join(', ')})`);
    return new NumpyDType(name, kind);
  }

  /** BUILD state `(version, byteorder, subarray, names, fields, elsize, alignment, flags)`. */
  setState(state: unknown): void {
    if (!Array.isArray(state) || state.length < 5 || typeof state[0] !== 'number' || typeof state[1] !== 'string') {
      throw new NumpyPickleError('numpy dtype state is not (version, byteorder, ...)');
    }
    // Versions 3 and 4 differ only in trailing metadata; a subarray, field names or fields would make
    // this a structured dtype, which is not plain numbers.
    if (state[0] !== 3 && state[0] !== 4) throw new NumpyPickleError(`numpy dtype state version ${state[0]} is not supported`);
    if (state[2] !== null || state[3] !== null || state[4] !== null) throw new NumpyPickleError('structured numpy dtypes (fields or sub-arrays) are not supported');
    if (!['<', '>', '|', '='].includes(state[1])) throw new NumpyPickleError(`unknown numpy byte order '${state[1]}'`);
    this.byteOrder = state[1];
  }

  get littleEndian(): boolean {
    return this.byteOrder !== '>';
  }
}

/** A `numpy.ndarray` rebuilt from `_reconstruct` + BUILD; values decode to float64. */
export class NumpyArray {
  shape: number[] = [];
  dtype?: NumpyDType;
  fortranOrder = false;
  private raw?: Uint8Array;

  /** `_reconstruct(numpy.ndarray, (0,), b'b')`: an empty array waiting for its state. */
  static reconstruct(args: unknown[], isNdarray: (v: unknown) => boolean): NumpyArray {
    if (args.length !== 3 || !isNdarray(args[0])) throw new NumpyPickleError('numpy _reconstruct is only understood for numpy.ndarray');
    return new NumpyArray();
  }

  /** BUILD state `(version, shape, dtype, is_fortran, raw_bytes)` (version 1; version 0 has no number). */
  setState(state: unknown): void {
    if (!Array.isArray(state)) throw new NumpyPickleError('numpy array state is not a tuple');
    const s = state.length === 5 ? state.slice(1) : state.length === 4 ? state : null;
    if (!s) throw new NumpyPickleError(`numpy array state has ${state.length} items (expected 4 or 5)`);
    const [shape, dtype, fortran, raw] = s;
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw new NumpyPickleError('numpy array shape is not a tuple of non-negative integers');
    }
    if (!(dtype instanceof NumpyDType)) throw new NumpyPickleError('numpy array dtype is not a numpy.dtype');
    if (typeof fortran !== 'boolean' && fortran !== 0 && fortran !== 1) throw new NumpyPickleError('numpy array is_fortran flag is not a boolean');
    if (!(raw instanceof Uint8Array)) {
      throw new NumpyPickleError(Array.isArray(raw) ? 'numpy object arrays (pickled element by element) are not supported' : 'numpy array data is not bytes');
    }
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    if (raw.length !== n * dtype.kind.size) {
      throw new NumpyPickleError(`numpy array of shape [${shape.join(', ')}] and dtype ${dtype.name} needs ${n * dtype.kind.size} bytes, the pickle holds ${raw.length}`);
    }
    this.shape = shape as number[];
    this.dtype = dtype;
    this.fortranOrder = Boolean(fortran);
    this.raw = raw;
  }

  /** The values as a float64 tensor in C (row-major) order. */
  toTensor(): Tensor {
    if (!this.dtype || !this.raw) throw new NumpyPickleError('numpy array was never given its contents (no BUILD)');
    const { kind, littleEndian } = { kind: this.dtype.kind, littleEndian: this.dtype.littleEndian };
    const n = this.raw.length / kind.size;
    const view = new DataView(this.raw.buffer, this.raw.byteOffset, this.raw.byteLength);
    const stored = new Float64Array(n);
    for (let i = 0; i < n; i++) stored[i] = kind.read(view, i * kind.size, littleEndian);
    const data = this.fortranOrder && this.shape.length > 1 ? fortranToC(stored, this.shape) : stored;
    return { dtype: 'float64', shape: [...this.shape], data };
  }
}

/** `numpy.core.multiarray.scalar(dtype, bytes)`: one element, as a number. */
export function numpyScalar(args: unknown[]): number {
  const [dtype, raw] = args;
  if (!(dtype instanceof NumpyDType) || !(raw instanceof Uint8Array) || raw.length !== dtype.kind.size) {
    throw new NumpyPickleError('numpy scalar is only understood as (numpy.dtype, bytes of one element)');
  }
  return dtype.kind.read(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), 0, dtype.littleEndian);
}

