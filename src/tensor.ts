/** Host-side tensors: the common currency between weight files, graphs and the runtime. */

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export interface FloatTensor extends Tensor {
  dtype: 'float32';
  data: Float32Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function floatTensor(shape: number[], data?: Float32Array): FloatTensor {
  const n = numel(shape);
  if (data && data.length !== n) {
    throw new Error(`tensor data has ${data.length} elements, shape [${shape}] needs ${n}`);
  }
  return { dtype: 'float32', shape: [...shape], data: data ?? new Float32Array(n) };
}

/** A rows x cols row-major matrix transposed (cols x rows). */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
