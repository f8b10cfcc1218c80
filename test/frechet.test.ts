/**
 * The Fréchet distance of FID and its tr(sqrtm(S1 S2)), against closed forms and against a matrix
 * square root computed here independently (Denman–Beavers iteration on the non-symmetric product,
 * which is what scipy.linalg.sqrtm returns for it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frechetDistance, gaussianStats, pivotedCholesky, symmetricEigenvalues, traceSqrtProduct, type GaussianStats } from '../src/metrics/frechet.js';

/** Deterministic pseudo-random numbers in [-1, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j]! += a[i * n + k]! * b[k * n + j]!;
  return c;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j]!;
  return t;
}

function identity(n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = 1;
  return m;
}

/** A random orthogonal matrix: a product of Householder reflections. */
function orthogonal(n: number, r: () => number): Float64Array {
  let q = identity(n);
  for (let k = 0; k < n; k++) {
    const v = Float64Array.from({ length: n }, r);
    const vv = v.reduce((s, x) => s + x * x, 0);
    const h = identity(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j]! -= (2 * v[i]! * v[j]!) / vv;
    q = matmul(q, h, n);
  }
  return q;
}

/** Q diag(values) Qᵀ. */
function withSpectrum(q: Float64Array, values: number[]): Float64Array {
  const n = values.length;
  const d = new Float64Array(n * n);
  values.forEach((v, i) => (d[i * n + i] = v));
  return matmul(matmul(q, d, n), transpose(q, n), n);
}

/** A random symmetric positive definite matrix B Bᵀ + small ridge. */
function randomSpd(n: number, r: () => number, ridge = 0.1): Float64Array {
  const b = Float64Array.from({ length: n * n }, r);
  const m = matmul(b, transpose(b, n), n);
  for (let i = 0; i < n; i++) m[i * n + i]! += ridge;
  return m;
}

function inverse(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = identity(n);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(m[i * n + c]!) > Math.abs(m[p * n + c]!)) p = i;
    for (let j = 0; j < n; j++) {
      [m[c * n + j], m[p * n + j]] = [m[p * n + j]!, m[c * n + j]!];
      [inv[c * n + j], inv[p * n + j]] = [inv[p * n + j]!, inv[c * n + j]!];
    }
    const d = m[c * n + c]!;
    for (let j = 0; j < n; j++) {
      m[c * n + j]! /= d;
      inv[c * n + j]! /= d;
    }
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const f = m[i * n + c]!;
      for (let j = 0; j < n; j++) {
        m[i * n + j]! -= f * m[c * n + j]!;
        inv[i * n + j]! -= f * inv[c * n + j]!;
      }
    }
  }
  return inv;
}

/** Principal square root of a matrix with positive real eigenvalues (Denman–Beavers, 1976). */
function sqrtmDenmanBeavers(a: Float64Array, n: number): Float64Array {
  let y = Float64Array.from(a);
  let z = identity(n);
  for (let it = 0; it < 100; it++) {
    const yi = inverse(y, n);
    const zi = inverse(z, n);
    const y2 = y.map((v, i) => (v + zi[i]!) / 2);
    const z2 = z.map((v, i) => (v + yi[i]!) / 2);
    const change = y2.reduce((s, v, i) => Math.max(s, Math.abs(v - y[i]!)), 0);
    y = y2;
    z = z2;
    if (change < 1e-15 * Math.max(1, ...y.map(Math.abs))) break;
  }
  return y;
}

const trace = (a: Float64Array, n: number) => Array.from({ length: n }, (_, i) => a[i * n + i]!).reduce((s, v) => s + v, 0);

function close(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} vs ${expected} (tolerance ${tol})`);
}

const stats = (mu: number[], sigma: Float64Array): GaussianStats => ({ dim: mu.length, mu: Float64Array.from(mu), sigma });

test('identical statistics are at distance 0', () => {
  const r = rng(1);
  for (const n of [1, 2, 7, 40]) {
    const s = stats(Array.from({ length: n }, r), randomSpd(n, r));
    close(frechetDistance(s, s), 0, 1e-9 * trace(s.sigma, n), `n=${n}`);
  }
});

test('diagonal covariances: sum (sqrt a - sqrt b)² plus the squared mean difference', () => {
  const a = [4, 1, 0.25, 9, 2];
  const b = [1, 1, 1, 16, 0.5];
  const diag = (v: number[]) => {
    const m = new Float64Array(v.length * v.length);
    v.forEach((x, i) => (m[i * v.length + i] = x));
    return m;
  };
  const mu1 = [0, 1, 2, 3, 4];
  const mu2 = [1, 1, 0, 3, 4.5];
  const expected = mu1.reduce((s, m, i) => s + (m - mu2[i]!) ** 2, 0) + a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i]!)) ** 2, 0);
  close(frechetDistance(stats(mu1, diag(a)), stats(mu2, diag(b))), expected, 1e-12);
  // hand value: mean 1 + 4 + 0.25 = 5.25; covariance 1 + 0 + 0.25 + 1 + (sqrt2 - sqrt0.5)² = 2.25 + 0.5
  close(expected, 5.25 + 2.75, 1e-12);
});

test('rotated (non-diagonal) covariances with a common eigenbasis give the same closed form', () => {
  const r = rng(7);
  const n = 6;
  const q = orthogonal(n, r);
  const a = [5, 3, 2, 1, 0.5, 0.01];
  const b = [0.2, 4, 2, 3, 0.5, 1];
  const expected = a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i]!)) ** 2, 0);
  const zero = Array(n).fill(0);
  close(frechetDistance(stats(zero, withSpectrum(q, a)), stats(zero, withSpectrum(q, b))), expected, 1e-10);
});

test('2x2 non-commuting covariances: tr sqrtm(M) = sqrt(tr M + 2 sqrt(det M))', () => {
  const s1 = Float64Array.of(2, 1, 1, 3);
  const s2 = Float64Array.of(1, -0.5, -0.5, 4);
  const m = matmul(s1, s2, 2);
  const det = m[0]! * m[3]! - m[1]! * m[2]!;
  const expected = Math.sqrt(m[0]! + m[3]! + 2 * Math.sqrt(det));
  close(traceSqrtProduct(s1, s2, 2), expected, 1e-13);
});

test('tr sqrtm(S1 S2) matches an independent matrix square root of the product (general SPD pairs)', () => {
  const r = rng(11);
  for (const n of [3, 8, 20]) {
    const s1 = randomSpd(n, r);
    const s2 = randomSpd(n, r, 0.01);
    const m = matmul(s1, s2, n);
    const root = sqrtmDenmanBeavers(m, n);
    // the independent root is a square root of the product
    const err = matmul(root, root, n).reduce((s, v, i) => Math.max(s, Math.abs(v - m[i]!)), 0);
    assert.ok(err < 1e-9 * Math.max(...m.map(Math.abs)), `Denman–Beavers residual ${err}`);
    close(traceSqrtProduct(s1, s2, n), trace(root, n), 1e-9 * trace(root, n), `n=${n}`);
  }
});

test('rank-deficient covariances (fewer samples than dimensions) need no offset', () => {
  const r = rng(5);
  const dim = 6;
  const samples = (k: number) => Array.from({ length: k }, () => Float64Array.from({ length: dim }, r));
  const a = gaussianStats(samples(3), dim); // rank 2
  const b = gaussianStats(samples(20), dim);
  assert.equal(pivotedCholesky(a.sigma, dim).rank, 2);
  // the limit of the regularised value as the ridge goes to 0
  const ridge = (s: Float64Array, eps: number) => s.map((v, i) => (i % (dim + 1) === 0 ? v + eps : v));
  const reference = trace(sqrtmDenmanBeavers(matmul(ridge(a.sigma, 1e-12), b.sigma, dim), dim), dim);
  close(traceSqrtProduct(a.sigma, b.sigma, dim), reference, 1e-5);
  const d = frechetDistance(a, b);
  assert.ok(Number.isFinite(d) && d > 0);
  // a singular matrix against itself: still 0
  close(frechetDistance(a, a), 0, 1e-9);
});

test('symmetric eigenvalues of Q diag(λ) Qᵀ are λ', () => {
  const r = rng(3);
  const n = 12;
  const lambda = Array.from({ length: n }, (_, i) => (i - 4) * 1.5 + (i % 3) * 0.01);
  lambda[5] = lambda[6]!; // a repeated eigenvalue
  const ev = symmetricEigenvalues(withSpectrum(orthogonal(n, r), lambda), n);
  const want = [...lambda].sort((x, y) => x - y);
  ev.forEach((v, i) => close(v, want[i]!, 1e-11, `λ${i}`));
  assert.deepEqual([...symmetricEigenvalues(Float64Array.of(3), 1)], [3]);
});

test('gaussianStats: mean and covariance divided by N - 1 (numpy.cov), by hand', () => {
  const s = gaussianStats([[1, 2], [3, 6], [5, 7]], 2);
  assert.deepEqual([...s.mu], [3, 5]);
  assert.deepEqual([...s.sigma], [4, 5, 5, 7]);
  assert.throws(() => gaussianStats([[1, 2]], 2), /at least 2 samples/);
});

test('non-finite or mismatched statistics are errors', () => {
  const good = stats([0, 0], Float64Array.of(1, 0, 0, 1));
  assert.throws(() => frechetDistance(good, stats([0], Float64Array.of(1))), /different dimensions/);
  assert.throws(() => frechetDistance(good, stats([NaN, 0], Float64Array.of(1, 0, 0, 1))), /non-finite/);
});
