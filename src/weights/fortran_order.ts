/** NumPy arrays stored in Fortran (column-major) order, as .npy files and pickled arrays may be. */

/** Column-major values of an array of `shape` to row-major. */
export function fortranToC(src: Float64Array, shape: readonly number[]): Float64Array {
  const out = new Float64Array(src.length);
  const rank = shape.length;
  const fStride: number[] = [];
  for (let k = 0, s = 1; k < rank; k++) {
    fStride.push(s);
    s *= shape[k]!;
  }
  // Walk the row-major positions, keeping the column-major offset alongside.
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < src.length; i++) {
    let off = 0;
    for (let k = 0; k < rank; k++) off += idx[k]! * fStride[k]!;
    out[i] = src[off]!;
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}
