/**
 * The runtime binding seam: what the pipeline, the face detector and the model loader need of an
 * ONNX Runtime session, with no dependence on which ONNX Runtime runs it (onnxruntime-node in
 * Node: ./runtime.ts; onnxruntime-web in the browser: web/src/ort_web.ts). Both bindings convert
 * tensors with `toOrtTensor` / `fromOrtTensor`, which only need the binding's Tensor class.
 */
import type { Tensor } from '../tensor.js';

/** A loaded graph: run it on named inputs, release it when done. */
export interface InferenceSessionLike {
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

/** A weight file an ONNX graph refers to (`<graph>.onnx.data`): its name in the graph and its bytes (or URL). */
export interface ExternalDataFile {
  path: string;
  data: Uint8Array | string;
}

export interface CreateSessionOptions {
  externalData?: ExternalDataFile[];
  /** Intra-op threads (where the binding lets a session choose them). */
  threads?: number;
}

/** Opens a session from ONNX bytes (or a path / URL the binding can read). */
export type CreateSession = (model: Uint8Array | string, opts?: CreateSessionOptions) => Promise<InferenceSessionLike>;

/** The part of onnxruntime-{node,web}'s Tensor class the conversion uses. */
export interface OrtTensorLike {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
}
export type OrtTensorClass<T extends OrtTensorLike> = new (type: never, data: never, dims: readonly number[]) => T;

export function toOrtTensor<T extends OrtTensorLike>(Ctor: OrtTensorClass<T>, t: Tensor): T {
  const C = Ctor as unknown as new (type: string, data: unknown, dims: readonly number[]) => T;
  return new C(t.dtype, t.data, t.shape);
}

export function fromOrtTensor(t: OrtTensorLike): Tensor {
  const shape = [...t.dims];
  switch (t.type) {
    case 'float32': return { dtype: 'float32', shape, data: t.data as Float32Array };
    case 'float64': return { dtype: 'float64', shape, data: t.data as Float64Array };
    case 'int64': return { dtype: 'int64', shape, data: t.data as BigInt64Array };
    case 'int32': return { dtype: 'int32', shape, data: t.data as Int32Array };
    case 'uint8': return { dtype: 'uint8', shape, data: t.data as Uint8Array };
    case 'int8': return { dtype: 'int8', shape, data: t.data as Int8Array };
    case 'bool': return { dtype: 'bool', shape, data: t.data as Uint8Array };
    default: throw new Error(`unsupported output tensor type ${t.type}`);
  }
}
