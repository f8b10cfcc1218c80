/**
 * Keeping requests inside the served folders. Two layers:
 *  - `screenRequestPath` refuses (400) a request whose raw path has anything a file name in the
 *    app never needs and path tricks rely on: encoded slashes or backslashes, backslashes, NUL,
 *    and '.' or '..' segments, plain or percent-encoded (checked after decoding);
 *  - `insideRoot` (the static server's allowedPath) resolves symbolic links and serves a file
 *    only when its real path lies inside the real root, so a link pointing out is not followed.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Why the raw request path (before any decoding; query string allowed) is refused, or null when it is fine. */
export function screenRequestPath(rawUrl: string): string | null {
  const q = rawUrl.search(/[?#]/);
  const raw = q < 0 ? rawUrl : rawUrl.slice(0, q);
  if (!raw.startsWith('/')) return 'the request target must be a path starting with /';
  if (/%2f|%5c|\\|%00|\0/i.test(raw)) return 'encoded slashes, backslashes and NUL are not allowed in paths';
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return 'the path is not valid percent-encoding';
  }
  if (decoded.split('/').some((s) => s === '.' || s === '..')) return "'.' and '..' path segments are not allowed";
  if (decoded.includes('//')) return 'empty path segments are not allowed';
  return null;
}

/** The real path of `root`, cached per root. */
const realRoots = new Map<string, string>();

/**
 * True when `pathName` (relative to `root`, as the static server gives it) names something whose
 * real path, links resolved, is `root` itself or inside it. Something that does not exist is
 * refused (the caller answers 404).
 */
export function insideRoot(pathName: string, root: string): boolean {
  let realRoot = realRoots.get(root);
  if (realRoot === undefined) {
    realRoot = fs.realpathSync(root);
    realRoots.set(root, realRoot);
  }
  let real: string;
  try {
    real = fs.realpathSync(path.join(root, pathName));
  } catch {
    return false;
  }
  const rel = path.relative(realRoot, real);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
