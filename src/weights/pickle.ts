/**
 * Restricted unpickler for torch.save files (the `data.pkl` of zip archives, and the pickles of the
 * legacy non-zip format: ./torch_legacy.ts), pickle protocols 2-5.
 *
 * Python's pickle is a small stack machine whose GLOBAL + REDUCE opcodes can call any
 * importable function (`os.system` included), so loading an untrusted checkpoint with a
 * general unpickler is remote code execution. This one interprets the opcodes itself and
 * only knows how to build plain values (dict, list, tuple, set, str, bytes, int, float,
 * bool, None) plus a fixed allow-list of "globals" that it implements natively:
 *
 *   collections.OrderedDict                       -> Map
 *   torch._utils._rebuild_tensor[_v2]             -> PickledTensor (a view description)
 *   torch[.cuda].<Float|Double|...>Tensor() + BUILD (storage, offset, size, stride)
 *                                                 -> TensorShell holding a PickledTensor (torch < 0.2)
 *   torch._utils._rebuild_parameter[_with_state]  -> the underlying PickledTensor
 *   torch.<Float|Half|BFloat16|Double|Long|Int|Short|Char|Byte|Bool>Storage,
 *   torch[.storage].UntypedStorage                -> storage classes, only usable in persistent ids
 *   _codecs.encode(str, 'latin1')                 -> bytes (how protocol 2 spells bytes objects)
 *   numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, numpy.core.multiarray.scalar
 *                                                 -> NumpyArray / numbers, decoded as data only
 *                                                    (./numpy_pickle.ts; FID statistics files)
 *
 * Anything else (other globals, object-building opcodes on other classes, unknown opcodes)
 * is refused with a WeightFileError before any effect; nothing is ever executed.
 *
 * Representation: dicts are `Map`, lists and tuples are arrays, sets are `Set`, bytes are
 * `Uint8Array`, ints are `number` (or `bigint` beyond 2^53), None is `null`.
 * Tensors stay lazy (`PickledTensor`) so callers can drop unwanted ones without reading
 * their storage; `materialize()` gathers the view into a contiguous host tensor.
 */

import { type DType, type Tensor, type TensorData, numel, shapeStr } from '../tensor.js';
import { WeightFileError } from './errors.js';
import type { ElementType } from './safetensors.js';
import { NumpyArray, NumpyDType, NumpyPickleError, numpyScalar } from './numpy_pickle.js';

/** What a `('storage', storage_type, key, location, numel)` persistent id says. */
export interface StorageRef {
  /** Storage class as pickled, e.g. "FloatStorage". */
  storageClass: string;
  /** Element type of the raw bytes (UntypedStorage: U8). */
  elementType: ElementType;
  /** Name of the archive member holding the bytes: `<archive>/data/<key>`. */
  key: string;
  /** Device it was saved from ("cpu", "cuda:0"); irrelevant here, kept for messages. */
  location: string;
  /** Number of elements of `elementType`. */
  numel: number;
  /**
   * Legacy (non-zip) files only: the persistent id's view_metadata, when the pickled storage was a
   * view of part of the storage `key`: its own key, element offset into `key` and element count.
   */
  view?: { key: string; offset: number; numel: number };
}

/** Decoded storage contents, as produced by the caller's loader. */
export interface HostStorage {
  dtype: DType;
  data: TensorData;
}

/** Handle returned by the persistent-id callback; `load` is called only when a tensor is materialized. */
export interface StorageHandle {
  ref: StorageRef;
  load(): HostStorage;
  /** Drops the decoded storage from the loader's cache (it is decoded again if loaded again). */
  release?(): void;
}

export interface UnpickleOptions {
  /** File named in error messages. */
  file: string;
  /** Archive member the pickle came from (e.g. "archive/data.pkl"), for messages. */
  entry?: string;
  /** Resolves storage persistent ids; without it any BINPERSID is refused. */
  persistentLoad?: (ref: StorageRef) => StorageHandle;
}

/** A tensor as torch pickles it: a strided view into a storage. */
export class PickledTensor {
  constructor(
    readonly storage: StorageHandle,
    readonly storageOffset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
  ) {}

  /**
   * Gathers the view into a new contiguous tensor (row-major), honouring offset and strides.
   * `file`/`key` only label errors.
   */
  materialize(file: string, key?: string): Tensor {
    const { dtype, data } = this.storage.load();
    const size = this.size;
    const stride = this.stride;
    const n = numel(size);
    const where = key !== undefined ? `tensor '${key}'` : `a tensor in storage '${this.storage.ref.key}'`;
    const ctor = data.constructor as new (length: number) => TensorData;
    if (n === 0) return { dtype, shape: [...size], data: new ctor(0) };

    let last = this.storageOffset;
    for (let d = 0; d < size.length; d++) last += (size[d] - 1) * stride[d];
    if (last >= data.length) {
      throw new WeightFileError(file, `${where} (shape ${shapeStr(size)}, stride ${shapeStr(stride)}, offset ${this.storageOffset}) reaches past its storage '${this.storage.ref.key}'`, {
        ...(key !== undefined ? { key } : {}),
        expected: `storage of at least ${last + 1} elements`,
        found: `${data.length}`,
      });
    }

    // Row-major contiguous (dims of extent 1 may carry any stride): one slice.
    let contiguous = true;
    for (let d = size.length - 1, expect = 1; d >= 0; d--) {
      if (size[d] !== 1 && stride[d] !== expect) {
        contiguous = false;
        break;
      }
      expect *= size[d];
    }
    if (contiguous) {
      return { dtype, shape: [...size], data: data.slice(this.storageOffset, this.storageOffset + n) };
    }

    // General strides: walk the index space with an odometer, innermost dimension in a tight loop.
    const out = new ctor(n) as unknown as { [i: number]: number | bigint };
    const src = data as unknown as { [i: number]: number | bigint };
    const rank = size.length;
    const inner = size[rank - 1];
    const innerStride = stride[rank - 1];
    const idx = new Array<number>(rank).fill(0);
    let base = this.storageOffset;
    for (let o = 0; o < n; o += inner) {
      for (let i = 0, s = base; i < inner; i++, s += innerStride) out[o + i] = src[s];
      // advance the outer dimensions
      for (let d = rank - 2; d >= 0; d--) {
        idx[d]++;
        base += stride[d];
        if (idx[d] < size[d]) break;
        base -= stride[d] * size[d];
        idx[d] = 0;
      }
    }
    return { dtype, shape: [...size], data: out as unknown as TensorData };
  }
}

/**
 * A tensor as torch < 0.2 pickled it: `torch.FloatTensor()` (REDUCE with no arguments), then BUILD
 * with the state (storage, storage_offset, size, stride), which torch's Tensor.__setstate__ still
 * reads as "legacy serialization of Tensor". The pickle may refer to the object (memo) before its
 * BUILD, so it is a shell that BUILD fills in.
 */
export class TensorShell {
  tensor?: PickledTensor;
  constructor(readonly className: string) {}
}

export function isPickledTensor(v: unknown): v is PickledTensor {
  return v instanceof PickledTensor;
}

// ---------------------------------------------------------------------------------------------
// Allowed globals

type GlobalKind =
  | 'ordered_dict' | 'rebuild_tensor' | 'rebuild_tensor_v2' | 'rebuild_parameter' | 'rebuild_parameter_with_state' | 'storage_class' | 'codecs_encode'
  | 'numpy_reconstruct' | 'numpy_ndarray' | 'numpy_dtype' | 'numpy_scalar' | 'legacy_tensor_class';

/** An allow-listed global: inert data, interpreted by the unpickler itself. */
class AllowedGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly kind: GlobalKind,
    readonly elementType?: ElementType,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

const STORAGE_CLASSES: Readonly<Record<string, ElementType>> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

function lookupGlobal(module: string, name: string): AllowedGlobal | undefined {
  const qn = `${module}.${name}`;
  switch (qn) {
    case 'collections.OrderedDict':
      return new AllowedGlobal(module, name, 'ordered_dict');
    case 'torch._utils._rebuild_tensor_v2':
      return new AllowedGlobal(module, name, 'rebuild_tensor_v2');
    case 'torch._utils._rebuild_tensor': // torch < 0.4 (legacy files)
      return new AllowedGlobal(module, name, 'rebuild_tensor');
    case 'numpy.core.multiarray._reconstruct':
    case 'numpy._core.multiarray._reconstruct': // numpy >= 2
      return new AllowedGlobal(module, name, 'numpy_reconstruct');
    case 'numpy.ndarray':
      return new AllowedGlobal(module, name, 'numpy_ndarray');
    case 'numpy.dtype':
      return new AllowedGlobal(module, name, 'numpy_dtype');
    case 'numpy.core.multiarray.scalar':
    case 'numpy._core.multiarray.scalar':
      return new AllowedGlobal(module, name, 'numpy_scalar');
    case 'torch._utils._rebuild_parameter':
      return new AllowedGlobal(module, name, 'rebuild_parameter');
    case 'torch._utils._rebuild_parameter_with_state':
      return new AllowedGlobal(module, name, 'rebuild_parameter_with_state');
    case '_codecs.encode':
      return new AllowedGlobal(module, name, 'codecs_encode');
    case 'torch.UntypedStorage':
    case 'torch.storage.UntypedStorage':
      return new AllowedGlobal(module, name, 'storage_class', 'U8');
  }
  if ((module === 'torch' || module === 'torch.cuda') && /^(Float|Double|Half|Long|Int|Short|Char|Byte)Tensor$/.test(name)) {
    return new AllowedGlobal(module, name, 'legacy_tensor_class');
  }
  if ((module === 'torch' || module === 'torch.storage') && Object.hasOwn(STORAGE_CLASSES, name)) {
    return new AllowedGlobal(module, name, 'storage_class', STORAGE_CLASSES[name]);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Opcodes

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const MARK_SENTINEL = Symbol('mark');
const utf8 = new TextDecoder('utf-8');
const latin1 = new TextDecoder('latin1');

/**
 * Decodes one pickle. Returns the top-level object (for torch.save: usually a Map).
 * Throws WeightFileError on malformed data and on anything outside the allow-list.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  return new Unpickler(data, opts).run();
}

/**
 * Decodes the pickle that starts at byte `start` of `data` and says where it ended (the byte
 * after its STOP): legacy torch files are several pickles back to back, then raw storages.
 */
export function unpickleAt(data: Uint8Array, start: number, opts: UnpickleOptions): { value: unknown; end: number } {
  const u = new Unpickler(data, opts, start);
  const value = u.run();
  return { value, end: u.position };
}

class Unpickler {
  private pos = 0;
  private stack: unknown[] = [];
  private readonly metastack: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly view: DataView;
  private readonly label: string;

  constructor(
    private readonly data: Uint8Array,
    private readonly opts: UnpickleOptions,
    start = 0,
  ) {
    this.pos = start;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.label = opts.entry !== undefined ? `pickle '${opts.entry}'` : 'pickle';
  }

  get position(): number {
    return this.pos;
  }

  private fail(problem: string, details: ConstructorParameters<typeof WeightFileError>[2] = {}): WeightFileError {
    return new WeightFileError(this.opts.file, `${this.label}: ${problem}`, details);
  }

  private refuse(what: string, why = 'only plain containers, torch tensor/storage globals and plain numpy arrays are allowed'): WeightFileError {
    return this.fail(`${what} is refused: ${why} (nothing was executed)`, {
      hint: 'if this checkpoint is trusted, re-save only the weights: torch.save(model.state_dict(), path)',
    });
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.data.length) {
      throw this.fail(`data ends early at byte ${this.pos} (truncated)`, { expected: `${n} more bytes`, found: `${this.data.length - this.pos}` });
    }
  }
  private u8(): number {
    this.need(1);
    return this.data[this.pos++];
  }
  private u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  private i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    // Any length past the end of the data fails need() anyway; clamp so it stays a number.
    return v > BigInt(this.data.length) ? this.data.length + 1 : Number(v);
  }
  private bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail(`unterminated text argument at byte ${this.pos} (truncated)`);
    const s = utf8.decode(this.data.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }

  private pop(): unknown {
    if (this.stack.length === 0) throw this.fail(`stack underflow at byte ${this.pos - 1}`);
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) throw this.fail(`stack underflow at byte ${this.pos - 1}`);
    return this.stack[this.stack.length - 1];
  }
  /**
   * Pushes after evaluating `v`: `this.stack.push(this.popMark())` would push onto the
   * stack that popMark just discarded, since the receiver is read before the argument.
   */
  private push(v: unknown): void {
    this.stack.push(v);
  }
  private popMark(): unknown[] {
    const items = this.stack;
    const prev = this.metastack.pop();
    if (prev === undefined) throw this.fail(`no MARK before byte ${this.pos - 1}`);
    this.stack = prev;
    return items;
  }

  run(): unknown {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: // PROTO
          {
            const v = this.u8();
            if (v > 5) throw this.fail(`pickle protocol ${v} is not supported`, { expected: 'protocol 2 to 5', found: `${v}` });
          }
          break;
        case 0x95: // FRAME: framing is a buffering hint; the data follows inline
          this.u64();
          break;
        case 0x2e: // STOP
          {
            const v = this.pop();
            return v;
          }
        case 0x28: // MARK
          this.metastack.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP
          if (this.stack.length === 0 && this.metastack.length > 0) this.popMark();
          else this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.stack.push(this.top());
          break;

        case 0x4e: // NONE
          this.stack.push(null);
          break;
        case 0x88: // NEWTRUE
          this.stack.push(true);
          break;
        case 0x89: // NEWFALSE
          this.stack.push(false);
          break;
        case 0x4a: // BININT
          this.stack.push(this.i32());
          break;
        case 0x4b: // BININT1
          this.stack.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.stack.push(this.u16());
          break;
        case 0x8a: // LONG1
          this.stack.push(decodeLong(this.bytes(this.u8())));
          break;
        case 0x8b: // LONG4
          {
            const n = this.i32();
            if (n < 0) throw this.fail(`LONG4 with negative length at byte ${at}`);
            this.stack.push(decodeLong(this.bytes(n)));
          }
          break;
        case 0x47: // BINFLOAT (big-endian, unlike everything else)
          this.need(8);
          this.stack.push(this.view.getFloat64(this.pos, false));
          this.pos += 8;
          break;

        case 0x58: // BINUNICODE
          this.stack.push(utf8.decode(this.bytes(this.u32())));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.stack.push(utf8.decode(this.bytes(this.u8())));
          break;
        case 0x8d: // BINUNICODE8
          this.stack.push(utf8.decode(this.bytes(this.u64())));
          break;
        case 0x55: // SHORT_BINSTRING (Python 2 str)
          this.stack.push(latin1.decode(this.bytes(this.u8())));
          break;
        case 0x54: // BINSTRING
          {
            const n = this.i32();
            if (n < 0) throw this.fail(`BINSTRING with negative length at byte ${at}`);
            this.stack.push(latin1.decode(this.bytes(n)));
          }
          break;
        case 0x43: // SHORT_BINBYTES
          this.stack.push(new Uint8Array(this.bytes(this.u8())));
          break;
        case 0x42: // BINBYTES
          this.stack.push(new Uint8Array(this.bytes(this.u32())));
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.stack.push(new Uint8Array(this.bytes(this.u64())));
          break;

        case 0x7d: // EMPTY_DICT
          this.stack.push(new Map());
          break;
        case 0x5d: // EMPTY_LIST
          this.stack.push([]);
          break;
        case 0x29: // EMPTY_TUPLE
          this.stack.push([]);
          break;
        case 0x8f: // EMPTY_SET
          this.stack.push(new Set());
          break;
        case 0x74: // TUPLE
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x91: // FROZENSET
          this.push(new Set(this.popMark()));
          break;
        case 0x64: // DICT
          this.push(this.pairsToMap(this.popMark(), at));
          break;
        case 0x85: // TUPLE1
          this.stack.push([this.pop()]);
          break;
        case 0x86: // TUPLE2
          {
            const b = this.pop();
            const a = this.pop();
            this.stack.push([a, b]);
          }
          break;
        case 0x87: // TUPLE3
          {
            const c = this.pop();
            const b = this.pop();
            const a = this.pop();
            this.stack.push([a, b, c]);
          }
          break;
        case 0x61: // APPEND
          {
            const v = this.pop();
            this.listAt(at).push(v);
          }
          break;
        case 0x65: // APPENDS
          {
            const items = this.popMark();
            this.listAt(at).push(...items);
          }
          break;
        case 0x90: // ADDITEMS
          {
            const items = this.popMark();
            const s = this.top();
            if (!(s instanceof Set)) throw this.fail(`ADDITEMS at byte ${at} on a non-set`);
            for (const it of items) s.add(it);
          }
          break;
        case 0x73: // SETITEM
          {
            const v = this.pop();
            const k = this.pop();
            this.dictAt(at).set(k, v);
          }
          break;
        case 0x75: // SETITEMS
          {
            const items = this.popMark();
            const d = this.dictAt(at);
            if (items.length % 2 !== 0) throw this.fail(`SETITEMS at byte ${at} with an odd number of items`);
            for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
          }
          break;

        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.u32(), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        case 0x68: // BINGET
          this.stack.push(this.memoGet(this.u8(), at));
          break;
        case 0x6a: // LONG_BINGET
          this.stack.push(this.memoGet(this.u32(), at));
          break;

        case 0x63: // GLOBAL
          {
            const module = this.line();
            const name = this.line();
            this.stack.push(this.resolveGlobal(module, name));
          }
          break;
        case 0x93: // STACK_GLOBAL
          {
            const name = this.pop();
            const module = this.pop();
            if (typeof module !== 'string' || typeof name !== 'string') {
              throw this.fail(`STACK_GLOBAL at byte ${at} needs two strings`);
            }
            this.stack.push(this.resolveGlobal(module, name));
          }
          break;
        case 0x52: // REDUCE
          {
            const args = this.pop();
            const fn = this.pop();
            this.stack.push(this.call(fn, args, at));
          }
          break;
        case 0x81: // NEWOBJ
          {
            const args = this.pop();
            const cls = this.pop();
            this.stack.push(this.construct(cls, args, 'NEWOBJ', at));
          }
          break;
        case 0x92: // NEWOBJ_EX
          {
            const kwargs = this.pop();
            const args = this.pop();
            const cls = this.pop();
            if (!(kwargs instanceof Map) || kwargs.size !== 0) {
              throw this.refuse(`NEWOBJ_EX with keyword arguments at byte ${at}`);
            }
            this.stack.push(this.construct(cls, args, 'NEWOBJ_EX', at));
          }
          break;
        case 0x62: // BUILD
          {
            const state = this.pop();
            this.build(this.top(), state, at);
          }
          break;
        case 0x51: // BINPERSID
          this.stack.push(this.persistentLoad(this.pop(), at));
          break;

        default: {
          const name = OPCODE_NAMES[op];
          throw this.refuse(
            name !== undefined
              ? `opcode ${name} (0x${hex(op)}) at byte ${at}`
              : `unknown opcode 0x${hex(op)} at byte ${at}`,
            'it is not part of the pickle subset torch.save produces',
          );
        }
      }
    }
  }

  private memoGet(i: number, at: number): unknown {
    if (!this.memo.has(i)) throw this.fail(`memo entry ${i} read before it was written (byte ${at})`);
    return this.memo.get(i);
  }

  private listAt(at: number): unknown[] {
    const l = this.top();
    if (!Array.isArray(l)) throw this.fail(`append at byte ${at} on a non-list (${describe(l)})`);
    return l;
  }

  private dictAt(at: number): Map<unknown, unknown> {
    const d = this.top();
    if (!(d instanceof Map)) throw this.fail(`setitem at byte ${at} on a non-dict (${describe(d)})`);
    return d;
  }

  private pairsToMap(items: unknown[], at: number): Map<unknown, unknown> {
    if (items.length % 2 !== 0) throw this.fail(`DICT at byte ${at} with an odd number of items`);
    const m = new Map<unknown, unknown>();
    for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
    return m;
  }

  private resolveGlobal(module: string, name: string): AllowedGlobal {
    const g = lookupGlobal(module, name);
    if (!g) throw this.refuse(`global '${module}.${name}'`);
    return g;
  }

  /** REDUCE: `fn(*args)` for the allow-listed callables, implemented here. */
  private call(fn: unknown, args: unknown, at: number): unknown {
    if (!(fn instanceof AllowedGlobal)) throw this.refuse(`REDUCE at byte ${at} on ${describe(fn)}`);
    if (!Array.isArray(args)) throw this.fail(`REDUCE at byte ${at}: arguments of ${fn.qualifiedName} are not a tuple`);
    switch (fn.kind) {
      case 'ordered_dict':
        return this.orderedDict(args, at);
      case 'rebuild_tensor_v2':
      case 'rebuild_tensor':
        return this.rebuildTensor(args, at, fn.kind === 'rebuild_tensor' ? 4 : 6);
      case 'numpy_reconstruct':
        return this.numpy(at, () => NumpyArray.reconstruct(args, (v) => v instanceof AllowedGlobal && v.kind === 'numpy_ndarray'));
      case 'numpy_dtype':
        return this.numpy(at, () => NumpyDType.fromArgs(args));
      case 'numpy_scalar':
        return this.numpy(at, () => numpyScalar(args));
      case 'numpy_ndarray':
        throw this.refuse(`calling numpy.ndarray (REDUCE at byte ${at})`);
      case 'legacy_tensor_class':
        if (args.length !== 0) throw this.refuse(`${fn.qualifiedName} with arguments (REDUCE at byte ${at})`);
        return new TensorShell(fn.qualifiedName);
      case 'rebuild_parameter':
      case 'rebuild_parameter_with_state': {
        const data = args[0] instanceof TensorShell ? args[0].tensor : args[0];
        if (!(data instanceof PickledTensor)) throw this.fail(`${fn.qualifiedName} at byte ${at}: first argument is not a tensor (${describe(data)})`);
        return data;
      }
      case 'codecs_encode': {
        const [s, enc] = args;
        if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) {
          throw this.refuse(`_codecs.encode with arguments other than (str, 'latin1') at byte ${at}`);
        }
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) {
          const c = s.charCodeAt(i);
          if (c > 0xff) throw this.fail(`_codecs.encode at byte ${at}: character outside latin1`);
          out[i] = c;
        }
        return out;
      }
      case 'storage_class':
        throw this.refuse(`calling ${fn.qualifiedName} (REDUCE at byte ${at})`);
    }
  }

  /** NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`; only OrderedDict qualifies. */
  private construct(cls: unknown, args: unknown, opname: string, at: number): unknown {
    if (!(cls instanceof AllowedGlobal) || cls.kind !== 'ordered_dict') {
      throw this.refuse(`${opname} at byte ${at} on ${describe(cls)}`);
    }
    if (!Array.isArray(args)) throw this.fail(`${opname} at byte ${at}: arguments are not a tuple`);
    // __new__ ignores its arguments; items arrive through SETITEMS / BUILD.
    return new Map();
  }

  private orderedDict(args: unknown[], at: number): Map<unknown, unknown> {
    const m = new Map<unknown, unknown>();
    if (args.length === 0) return m;
    const items = args[0];
    if (args.length > 1 || !(Array.isArray(items) || items instanceof Map)) {
      throw this.fail(`collections.OrderedDict at byte ${at}: unsupported arguments`);
    }
    if (items instanceof Map) return new Map(items);
    for (const pair of items) {
      if (!Array.isArray(pair) || pair.length !== 2) throw this.fail(`collections.OrderedDict at byte ${at}: items must be pairs`);
      m.set(pair[0], pair[1]);
    }
    return m;
  }

  /**
   * BUILD sets object state. torch attaches `_metadata` (module versions) to state-dict
   * OrderedDicts this way; that information is not needed, so dict state on a dict is
   * accepted and dropped. Everything else would mean running `__setstate__`: refused.
   */
  private build(obj: unknown, state: unknown, at: number): void {
    if (obj instanceof NumpyArray || obj instanceof NumpyDType) {
      this.numpy(at, () => obj.setState(state));
      return;
    }
    if (obj instanceof TensorShell) {
      if (obj.tensor) throw this.fail(`BUILD at byte ${at} on a ${obj.className} that already has its state`);
      if (!Array.isArray(state) || state.length !== 4) {
        throw this.refuse(`BUILD at byte ${at} on ${obj.className} with ${describe(state)} state`, 'only the legacy (storage, offset, size, stride) tensor state is understood');
      }
      obj.tensor = this.rebuildTensor(state, at, 4);
      return;
    }
    const isDictState = (s: unknown) => s === null || s instanceof Map;
    const ok =
      obj instanceof Map &&
      (isDictState(state) || (Array.isArray(state) && state.length === 2 && isDictState(state[0]) && isDictState(state[1])));
    if (!ok) throw this.refuse(`BUILD at byte ${at} on ${describe(obj)} with ${describe(state)} state`);
  }

  /** Runs a numpy rebuild step, turning its complaints into errors that name the file and byte. */
  private numpy<T>(at: number, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof NumpyPickleError) throw this.refuse(`${e.message} (byte ${at})`, 'only plain numeric numpy arrays are rebuilt');
      throw e;
    }
  }

  /**
   * `('storage', storage_type, key, location, numel)` as zip-format torch.save writes it, or
   * `(..., view_metadata)` as the legacy format does, view_metadata being None or
   * `(view_key, offset, view_numel)` (torch/serialization.py, _legacy_save / _legacy_load).
   */
  private persistentLoad(pid: unknown, at: number): StorageHandle {
    if (!this.opts.persistentLoad) throw this.refuse(`persistent id at byte ${at} (no storage loader given)`);
    if (!Array.isArray(pid) || (pid.length !== 5 && pid.length !== 6) || pid[0] !== 'storage') {
      throw this.refuse(`persistent id ${describe(pid)} at byte ${at} (only ('storage', type, key, location, numel[, view]) is understood)`);
    }
    const [, cls, key, location, n, viewMeta] = pid;
    let view: StorageRef['view'];
    if (viewMeta !== undefined && viewMeta !== null) {
      const [vKey, vOffset, vNumel] = Array.isArray(viewMeta) ? viewMeta : [];
      if (!Array.isArray(viewMeta) || viewMeta.length !== 3 || typeof vKey !== 'string' || !isNonNegativeInt(vOffset) || !isNonNegativeInt(vNumel)) {
        throw this.fail(`malformed storage view metadata at byte ${at}`, { expected: '(str view_key, int offset, int numel)', found: describe(viewMeta) });
      }
      view = { key: vKey, offset: vOffset, numel: vNumel };
    }
    if (!(cls instanceof AllowedGlobal) || cls.kind !== 'storage_class' || cls.elementType === undefined) {
      throw this.refuse(`persistent id at byte ${at} with storage type ${describe(cls)}`);
    }
    if (typeof key !== 'string' || typeof location !== 'string' || !isNonNegativeInt(n)) {
      throw this.fail(`malformed storage persistent id at byte ${at}`, { expected: '(str key, str location, int numel)', found: describe(pid) });
    }
    return this.opts.persistentLoad({ storageClass: cls.name, elementType: cls.elementType, key, location, numel: n, ...(view ? { view } : {}) });
  }

  /**
   * `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`,
   * or torch < 0.4's `_rebuild_tensor(storage, storage_offset, size, stride)` (minArgs 4).
   */
  private rebuildTensor(args: unknown[], at: number, minArgs: 4 | 6): PickledTensor {
    const [storage, offset, size, stride, requiresGrad] = args;
    const name = minArgs === 4 ? '_rebuild_tensor' : '_rebuild_tensor_v2';
    const bad = (what: string) =>
      this.fail(`torch._utils.${name} at byte ${at}: ${what}`, { found: describe(args) });
    if (minArgs === 4 && args.length !== 4) throw bad(`expected 4 arguments, got ${args.length}`);
    if (minArgs === 6 && (args.length < 6 || args.length > 7)) throw bad(`expected 6 or 7 arguments, got ${args.length}`);
    if (!isStorageHandle(storage)) throw bad('first argument is not a storage persistent id');
    if (!isNonNegativeInt(offset)) throw bad('storage_offset is not a non-negative integer');
    if (!Array.isArray(size) || !size.every(isNonNegativeInt)) throw bad('size is not a tuple of non-negative integers');
    if (!Array.isArray(stride) || stride.length !== size.length || !stride.every(isNonNegativeInt)) {
      throw bad('stride is not a tuple of non-negative integers matching size');
    }
    return new PickledTensor(storage, offset, size as number[], stride as number[], requiresGrad === true);
  }
}

function isStorageHandle(v: unknown): v is StorageHandle {
  return typeof v === 'object' && v !== null && 'ref' in v && 'load' in v && typeof (v as StorageHandle).load === 'function';
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Little-endian two's-complement integer of any width (LONG1/LONG4). */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function hex(op: number): string {
  return op.toString(16).padStart(2, '0');
}

/** Short description of a pickled value for error messages (never huge). */
function describe(v: unknown): string {
  if (v instanceof AllowedGlobal) return `'${v.qualifiedName}'`;
  if (v instanceof PickledTensor) return `tensor ${shapeStr(v.size)}`;
  if (v instanceof TensorShell) return v.tensor ? `tensor ${shapeStr(v.tensor.size)}` : `empty ${v.className}`;
  if (v instanceof NumpyArray) return `numpy array ${shapeStr(v.shape)}`;
  if (v instanceof NumpyDType) return `numpy dtype ${v.name}`;
  if (v === null) return 'None';
  if (v instanceof Map) return `dict(${v.size})`;
  if (v instanceof Set) return `set(${v.size})`;
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (Array.isArray(v)) {
    const inner = v.slice(0, 6).map(describe).join(', ');
    return `(${inner}${v.length > 6 ? ', ...' : ''})`;
  }
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  if (isStorageHandle(v)) return `storage '${v.ref.key}'`;
  return String(v);
}
