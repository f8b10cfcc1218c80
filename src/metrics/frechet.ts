/**
 * The Fréchet distance between two Gaussians, as FID uses it (Heusel et al. 2017; pytorch-fid's
 * `calculate_frechet_distance`, BasicSR's `calculate_fid`):
 *
 *   d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))
 *
 * in float64. The reference implementations take scipy's `linalg.sqrtm` of the non-symmetric product
 * S1 S2 (and, when that comes out non-finite for near-singular covariances, retry with 1e-6 added to
 * both diagonals). Only the trace of that square root is needed, and for covariance matrices
 * (symmetric positive semi-definite) it is the sum of the square roots of the eigenvalues of S1 S2,
 * which are real and non-negative. Here they are found without forming S1 S2:
 *
 * - S1 = P L Lᵀ Pᵀ by Cholesky factorisation with diagonal pivoting, stopped when the largest pivot
 *   left is negligible, so L is n x r with r = rank(S1). A rank-deficient covariance (fewer images
 *   than feature dimensions: 100 images give rank 99 of 2048) is therefore handled exactly, not by
 *   an offset;
 * - S1 S2 = (P L)(Lᵀ Pᵀ S2), and AB and BA have the same non-zero eigenvalues, so those of S1 S2
 *   are the eigenvalues of the symmetric positive semi-definite r x r matrix M = Lᵀ (Pᵀ S2 P) L;
 * - M's eigenvalues come from Householder tridiagonalisation and the implicit symmetric QR algorithm
 *   with Wilkinson shifts (Golub & Van Loan, Matrix Computations, 8.3); rounding can leave tiny
 *   negative ones, which count as 0.
 *
 * Matrices are row-major Float64Arrays of n x n.
 */

/** Mean and covariance of a set of feature vectors. */
export interface GaussianStats {
  /** Feature dimension. */
  dim: number;
  /** Mean, length dim. */
  mu: Float64Array;
  /** Covariance, dim x dim row-major. */
  sigma: Float64Array;
  /** How many samples they were computed from, when known. */
  count?: number;
}

const EPS = 2 ** -52;

/**
 * Mean and unbiased covariance (divided by N - 1, as numpy.cov with rowvar=False) of `samples`,
 * each a vector of length `dim`, accumulated in float64.
 */
export function gaussianStats(samples: readonly ArrayLike<number>[], dim: number): GaussianStats {
  const n = samples.length;
  if (n < 2) throw new Error(`a covariance needs at least 2 samples, got ${n}`);
  const mu = new Float64Array(dim);
  for (const s of samples) {
    if (s.length !== dim) throw new Error(`feature vector of length ${s.length}, expected ${dim}`);
    for (let i = 0; i < dim; i++) mu[i]! += s[i]!;
  }
  for (let i = 0; i < dim; i++) mu[i]! /= n;
  const sigma = new Float64Array(dim * dim);
  const c = new Float64Array(dim);
  for (const s of samples) {
    for (let i = 0; i < dim; i++) c[i] = s[i]! - mu[i]!;
    // upper triangle only; mirrored below
    for (let i = 0; i < dim; i++) {
      const ci = c[i]!;
      if (ci === 0) continue;
      const row = i * dim;
      for (let j = i; j < dim; j++) sigma[row + j]! += ci * c[j]!;
    }
  }
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      const v = sigma[i * dim + j]! / (n - 1);
      sigma[i * dim + j] = v;
      sigma[j * dim + i] = v;
    }
  }
  return { dim, mu, sigma, count: n };
}

/** ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)). */
export function frechetDistance(a: GaussianStats, b: GaussianStats): number {
  const n = a.dim;
  if (b.dim !== n) throw new Error(`statistics of different dimensions: ${n} and ${b.dim}`);
  checkStats(a, 'first');
  checkStats(b, 'second');
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (a.mu[i]! - b.mu[i]!) ** 2;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += a.sigma[i * n + i]! + b.sigma[i * n + i]!;
  return meanTerm + trace - 2 * traceSqrtProduct(a.sigma, b.sigma, n);
}

function checkStats(s: GaussianStats, which: string): void {
  const n = s.dim;
  if (s.mu.length !== n || s.sigma.length !== n * n) throw new Error(`${which} statistics: mu has ${s.mu.length} values and sigma ${s.sigma.length}, dimension ${n}`);
  for (const v of s.mu) if (!Number.isFinite(v)) throw new Error(`${which} statistics: mu has a non-finite value`);
  for (const v of s.sigma) if (!Number.isFinite(v)) throw new Error(`${which} statistics: sigma has a non-finite value`);
}

/**
 * tr(sqrtm(S1 S2)) for symmetric positive semi-definite S1, S2 (n x n, row-major): the sum of the
 * square roots of the eigenvalues of S1 S2. Only the lower triangles are read (both are symmetrised
 * first, so tiny asymmetries from rounding in a stats file do not matter).
 */
export function traceSqrtProduct(s1: Float64Array, s2: Float64Array, n: number): number {
  const a = symmetrised(s1, n);
  const b = symmetrised(s2, n);
  const { l, perm, rank } = pivotedCholesky(a, n);
  if (rank === 0) return 0;
  // W = (Pᵀ S2 P) L : n x rank; row i of Pᵀ S2 P is row perm[i] of S2, permuted columns.
  const w = new Float64Array(n * rank);
  const bRow = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const src = perm[i]! * n;
    for (let k = 0; k < n; k++) bRow[k] = b[src + perm[k]!]!;
    const out = i * rank;
    for (let k = 0; k < n; k++) {
      const v = bRow[k]!;
      if (v === 0) continue;
      const lk = k * rank;
      // L is lower trapezoidal: L[k][j] = 0 for j > k
      const jmax = Math.min(k + 1, rank);
      for (let j = 0; j < jmax; j++) w[out + j]! += v * l[lk + j]!;
    }
  }
  // M = Lᵀ W : rank x rank, symmetric.
  const m = new Float64Array(rank * rank);
  for (let k = 0; k < n; k++) {
    const lk = k * rank;
    const wk = k * rank;
    const imax = Math.min(k + 1, rank);
    for (let i = 0; i < imax; i++) {
      const v = l[lk + i]!;
      if (v === 0) continue;
      const mi = i * rank;
      for (let j = 0; j < rank; j++) m[mi + j]! += v * w[wk + j]!;
    }
  }
  const ev = symmetricEigenvalues(symmetrised(m, rank), rank);
  let sum = 0;
  for (const v of ev) if (v > 0) sum += Math.sqrt(v);
  return sum;
}

function symmetrised(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    out[i * n + i] = a[i * n + i]!;
    for (let j = 0; j < i; j++) {
      const v = (a[i * n + j]! + a[j * n + i]!) / 2;
      out[i * n + j] = v;
      out[j * n + i] = v;
    }
  }
  return out;
}

/**
 * Cholesky factorisation with diagonal pivoting of a symmetric positive semi-definite matrix:
 * A[perm][:, perm] ≈ L Lᵀ, L n x rank (row-major, lower trapezoidal). It stops when every pivot
 * left is at most n · eps · (largest diagonal element): the rest of the Schur complement is
 * rounding noise for a semi-definite matrix (Higham, "Cholesky factorization", 2009, §3.3).
 * Negative diagonal elements (an indefinite input) are treated as zero.
 */
export function pivotedCholesky(a: Float64Array, n: number): { l: Float64Array; perm: Int32Array; rank: number } {
  const s = Float64Array.from(a);
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, s[i * n + i]!);
  const tol = n * EPS * maxDiag;
  const cols: Float64Array[] = [];
  let rank = 0;
  for (let j = 0; j < n; j++) {
    let p = j;
    for (let i = j + 1; i < n; i++) if (s[i * n + i]! > s[p * n + p]!) p = i;
    const pivot = s[p * n + p]!;
    if (!(pivot > tol)) break;
    if (p !== j) swapSymmetric(s, n, j, p, perm);
    const d = Math.sqrt(pivot);
    const col = new Float64Array(n);
    col[j] = d;
    for (let i = j + 1; i < n; i++) col[i] = s[i * n + j]! / d;
    // Schur complement update of the whole trailing block (kept symmetric for the swaps).
    for (let i = j + 1; i < n; i++) {
      const ci = col[i]!;
      if (ci === 0) continue;
      const row = i * n;
      for (let k = j + 1; k < n; k++) s[row + k]! -= ci * col[k]!;
    }
    cols.push(col);
    rank++;
  }
  // Columns computed before a later swap had their rows swapped with it, so they are in final order.
  const l = new Float64Array(n * rank);
  for (let j = 0; j < rank; j++) {
    const col = cols[j]!;
    for (let i = 0; i < n; i++) l[i * rank + j] = col[i]!;
  }
  return { l, perm, rank };

  function swapSymmetric(m: Float64Array, size: number, x: number, y: number, pm: Int32Array): void {
    for (let k = 0; k < size; k++) {
      const t = m[x * size + k]!;
      m[x * size + k] = m[y * size + k]!;
      m[y * size + k] = t;
    }
    for (let k = 0; k < size; k++) {
      const t = m[k * size + x]!;
      m[k * size + x] = m[k * size + y]!;
      m[k * size + y] = t;
    }
    const t = pm[x]!;
    pm[x] = pm[y]!;
    pm[y] = t;
    for (const c of cols) {
      const v = c[x]!;
      c[x] = c[y]!;
      c[y] = v;
    }
  }
}

/**
 * Eigenvalues (ascending) of a symmetric n x n matrix: Householder reduction to tridiagonal form,
 * then implicit symmetric QR steps with Wilkinson shifts until every off-diagonal element is
 * negligible (Golub & Van Loan, Algorithms 8.3.1 and 8.3.3). O(n³) for the reduction.
 */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  const { d, e } = tridiagonalise(a, n);
  tridiagonalEigenvalues(d, e);
  return d.sort();
}

/** Householder tridiagonalisation: diagonal d (n) and sub-diagonal e (n - 1) of Qᵀ A Q. */
function tridiagonalise(input: Float64Array, n: number): { d: Float64Array; e: Float64Array } {
  const a = Float64Array.from(input);
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    d[k] = a[k * n + k]!;
    // x = A[k+1.., k]; reflect it onto a multiple of the first unit vector.
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * n + k]! ** 2;
    const x0 = a[(k + 1) * n + k]!;
    if (norm2 === 0) {
      e[k] = 0;
      continue;
    }
    const alpha = x0 > 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    e[k] = alpha;
    for (let i = k + 1; i < n; i++) v[i] = a[i * n + k]!;
    v[k + 1]! -= alpha;
    let vv = 0;
    for (let i = k + 1; i < n; i++) vv += v[i]! ** 2;
    if (vv === 0) continue;
    const beta = 2 / vv;
    // p = beta B v, B the trailing block
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      let sum = 0;
      const row = i * n;
      for (let j = k + 1; j < n; j++) sum += a[row + j]! * v[j]!;
      p[i] = beta * sum;
      vp += v[i]! * p[i]!;
    }
    // q = p - (beta/2)(vᵀp) v;  B ← B - v qᵀ - q vᵀ
    const kk = (beta / 2) * vp;
    for (let i = k + 1; i < n; i++) p[i]! -= kk * v[i]!;
    for (let i = k + 1; i < n; i++) {
      const vi = v[i]!;
      const qi = p[i]!;
      const row = i * n;
      for (let j = k + 1; j < n; j++) a[row + j]! -= vi * p[j]! + qi * v[j]!;
    }
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + n - 2]!;
    e[n - 2] = a[(n - 1) * n + n - 2]!;
  }
  if (n >= 1) d[n - 1] = a[(n - 1) * n + n - 1]!;
  return { d, e };
}

/** Overwrites d with the eigenvalues of the symmetric tridiagonal (d, e); e is destroyed. */
function tridiagonalEigenvalues(d: Float64Array, e: Float64Array): void {
  const n = d.length;
  let hi = n - 1;
  let iterations = 0;
  const limit = 50 * Math.max(1, n);
  while (hi > 0) {
    for (let i = 0; i < hi; i++) {
      if (Math.abs(e[i]!) <= EPS * (Math.abs(d[i]!) + Math.abs(d[i + 1]!))) e[i] = 0;
    }
    while (hi > 0 && e[hi - 1] === 0) hi--;
    if (hi === 0) break;
    let lo = hi - 1;
    while (lo > 0 && e[lo - 1] !== 0) lo--;
    if (++iterations > limit) throw new Error('symmetric eigenvalues: the QR iteration did not converge');

    // Wilkinson shift: the eigenvalue of the trailing 2x2 block nearer its last diagonal element.
    const t = (d[hi - 1]! - d[hi]!) / 2;
    const eh = e[hi - 1]!;
    const mu = d[hi]! - (eh * eh) / (t + (t >= 0 ? 1 : -1) * Math.hypot(t, eh));

    // Implicit QR step: a rotation in plane (lo, lo+1) from the shifted first column, then chase
    // the bulge it creates down the band.
    let x = d[lo]! - mu;
    let z = e[lo]!;
    for (let k = lo; k < hi; k++) {
      const r = Math.hypot(x, z);
      const c = r === 0 ? 1 : x / r;
      const s = r === 0 ? 0 : z / r;
      if (k > lo) e[k - 1] = r;
      const a = d[k]!;
      const b = e[k]!;
      const dd = d[k + 1]!;
      d[k] = c * c * a + 2 * c * s * b + s * s * dd;
      d[k + 1] = s * s * a - 2 * c * s * b + c * c * dd;
      e[k] = c * s * (dd - a) + (c * c - s * s) * b;
      if (k + 1 < hi) {
        x = e[k]!;
        z = s * e[k + 1]!;
        e[k + 1] = c * e[k + 1]!;
      }
    }
  }
}
