/**
 * `--api-key-file`: every route except /healthz needs `Authorization: Bearer <key>`. Keys are
 * compared in constant time (SHA-256 digests of equal length through crypto.timingSafeEqual), so
 * the answer time says nothing about how much of a guess was right.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { HttpError } from './errors.js';

/** Reads the key (the file's content, surrounding whitespace removed); a missing or empty file is an error naming it. */
export function readApiKey(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`--api-key-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const key = text.trim();
  if (key === '') throw new Error(`--api-key-file ${file}: the file is empty; put the API key in it`);
  if (/\s/.test(key)) throw new Error(`--api-key-file ${file}: the key contains whitespace; put only the key in the file`);
  return key;
}

const digest = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest();

/** A check of the Authorization header against `key`; throws a 401 HttpError when it does not match. */
export function bearerCheck(key: string): (authorization: string | undefined) => void {
  const want = digest(key);
  const challenge = { 'www-authenticate': 'Bearer realm="osdface"' };
  return (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw new HttpError(401, 'unauthorized', 'this service needs an API key: send the header Authorization: Bearer <key>', challenge);
    if (!crypto.timingSafeEqual(digest(m[1]!), want)) throw new HttpError(401, 'unauthorized', 'the API key is not valid', challenge);
  };
}
