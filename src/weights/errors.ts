/**
 * One error type for everything that can go wrong while reading weight files.
 *
 * Weight problems are almost always user problems (wrong file, truncated download, a
 * checkpoint from a different model), so every message names the file, the tensor key
 * when there is one, what was expected and what was found, and, where it helps, what to
 * do about it. Callers can also branch on the `file` / `key` fields instead of parsing text.
 */

export interface WeightFileErrorDetails {
  /** Tensor (or archive entry) the problem is about. */
  key?: string;
  /** What the reader needed, e.g. "[4, 4]". Rendered as "expected X, found Y". */
  expected?: string;
  /** What the file actually had. */
  found?: string;
  /** Advice on how to fix it, appended as a separate sentence. */
  hint?: string;
  /** Underlying error (I/O error, JSON syntax error, ...). */
  cause?: unknown;
}

export class WeightFileError extends Error {
  readonly file: string;
  readonly key?: string;
  readonly expected?: string;
  readonly found?: string;
  readonly hint?: string;

  /**
   * @param file    path of the offending file (always the first thing in the message)
   * @param problem what is wrong, e.g. "tensor 'conv.weight' has shape [3, 4]"; when
   *                `details.key` is given but not mentioned here, the key is added
   */
  constructor(file: string, problem: string, details: WeightFileErrorDetails = {}) {
    super(formatMessage(file, problem, details), details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'WeightFileError';
    this.file = file;
    if (details.key !== undefined) this.key = details.key;
    if (details.expected !== undefined) this.expected = details.expected;
    if (details.found !== undefined) this.found = details.found;
    if (details.hint !== undefined) this.hint = details.hint;
  }
}

function formatMessage(file: string, problem: string, d: WeightFileErrorDetails): string {
  let msg = `${file}: `;
  if (d.key !== undefined && !problem.includes(`'${d.key}'`)) msg += `'${d.key}': `;
  msg += problem;
  if (d.expected !== undefined || d.found !== undefined) {
    const parts: string[] = [];
    if (d.expected !== undefined) parts.push(`expected ${d.expected}`);
    if (d.found !== undefined) parts.push(`found ${d.found}`);
    msg += `: ${parts.join(', ')}`;
  }
  if (d.hint !== undefined) msg += `. ${d.hint.charAt(0).toUpperCase()}${d.hint.slice(1)}`;
  return msg;
}

/**
 * Up to `limit` keys from `candidates` that look like `key`, best first; used to turn
 * "missing key" errors into "did you mean" errors (typos, renamed prefixes).
 * Ranking: longest common dotted suffix first (a wrong prefix is the usual mistake),
 * then edit distance.
 */
export function similarKeys(key: string, candidates: Iterable<string>, limit = 5): string[] {
  const keyParts = key.split('.');
  const scored: { k: string; suffix: number; dist: number }[] = [];
  for (const k of candidates) {
    const parts = k.split('.');
    let suffix = 0;
    while (
      suffix < parts.length &&
      suffix < keyParts.length &&
      parts[parts.length - 1 - suffix] === keyParts[keyParts.length - 1 - suffix]
    ) {
      suffix++;
    }
    scored.push({ k, suffix, dist: editDistance(key, k) });
  }
  // Only keep candidates that are plausibly related: they share the leaf name path
  // beyond the parameter name, or are within a modest edit distance.
  const maxDist = Math.max(3, Math.floor(key.length / 3));
  return scored
    .filter((s) => s.suffix >= 2 || s.dist <= maxDist)
    .sort((a, b) => b.suffix - a.suffix || a.dist - b.dist || (a.k < b.k ? -1 : 1))
    .slice(0, limit)
    .map((s) => s.k);
}

function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = new Array<number>(b.length + 1);
  let cur = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    const ca = a.charCodeAt(i - 1);
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1] + (ca === b.charCodeAt(j - 1) ? 0 : 1);
      cur[j] = Math.min(sub, prev[j] + 1, cur[j - 1] + 1);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/** "'a', 'b', 'c' and 12 more" — keeps messages readable for checkpoints with thousands of keys. */
export function listKeys(keys: readonly string[], limit = 5): string {
  if (keys.length === 0) return '(none)';
  const shown = keys.slice(0, limit).map((k) => `'${k}'`).join(', ');
  return keys.length > limit ? `${shown} and ${keys.length - limit} more` : shown;
}
