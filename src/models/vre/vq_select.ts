/**
 * VectorQuantizer.inference's selection, per sample (the reference only handles batch 1):
 * positions sorted by their distance to the nearest code, codes taken in that order without
 * repeats until n_min; rows past the number of distinct codes stay zero (index -1).
 */
import { type FloatTensor, type Tensor, floatTensor } from '../../tensor.js';

export interface Selection {
  tokens: FloatTensor;
  /** (B, n_min) int64; -1 marks a zero row. */
  indices: Tensor & { dtype: 'int64'; data: BigInt64Array };
}

export function selectCodes(minDistance: Tensor, codeIndex: Tensor, codebook: FloatTensor, nMin: number): Selection {
  const [batch, positions] = minDistance.shape as [number, number];
  const [nEmbed, dim] = codebook.shape as [number, number];
  const dist = minDistance.data as Float32Array;
  const idx = codeIndex.data as BigInt64Array;
  const tokens = floatTensor([batch, nMin, dim]);
  const indices = new BigInt64Array(batch * nMin).fill(-1n);
  for (let b = 0; b < batch; b++) {
    const base = b * positions;
    const order = Array.from({ length: positions }, (_, i) => i);
    order.sort((p, q) => dist[base + p]! - dist[base + q]! || p - q);
    const seen = new Set<number>();
    for (const pos of order) {
      if (seen.size >= nMin) break;
      const code = Number(idx[base + pos]);
      if (code < 0 || code >= nEmbed) throw new Error(`code index ${code} out of range 0..${nEmbed - 1}`);
      if (seen.has(code)) continue;
      const row = seen.size;
      seen.add(code);
      indices[b * nMin + row] = BigInt(code);
      tokens.data.set(codebook.data.subarray(code * dim, (code + 1) * dim), (b * nMin + row) * dim);
    }
  }
  return { tokens, indices: { dtype: 'int64', shape: [batch, nMin], data: indices } };
}
