/**
 * Minimal ZIP reader, enough for PyTorch checkpoints (torch.save's default format since 1.6).
 *
 * Reads the end-of-central-directory record (ZIP64 included: torch checkpoints pass 4 GB),
 * the central directory, and on demand one entry's local header and data (stored or deflate).
 * Only the directory is read up front; each `entry.read()` opens the file, reads that entry
 * and closes it again, so no descriptor outlives a call and huge archives are never loaded whole.
 * Every offset and size is bounds-checked against the file before use.
 */

import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { WeightFileError } from './errors.js';
import { openForReading, readFully } from './safetensors.js';

export interface ZipEntry {
  /** Path inside the archive, e.g. "archive/data/0". */
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly crc32: number;
  /** Offset of the entry's local header in the file. */
  readonly localHeaderOffset: number;
  /** Reads and (if needed) inflates the entry, checking size and CRC-32. */
  read(): Buffer;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

/** Reads the central directory of `file`. Throws WeightFileError for anything malformed. */
export function readZip(file: string): ZipEntry[] {
  const fd = openForReading(file);
  try {
    return readDirectory(file, fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}

function readDirectory(file: string, fd: number, size: number): ZipEntry[] {
  const corrupt = (problem: string, details: ConstructorParameters<typeof WeightFileError>[2] = {}) =>
    new WeightFileError(file, problem, { hint: 'the archive is truncated or corrupt; download or save it again', ...details });

  if (size < EOCD_SIZE) {
    throw corrupt('file is too short to be a zip archive', { expected: `at least ${EOCD_SIZE} bytes`, found: `${size}` });
  }
  // The EOCD record sits at the very end, followed only by an optional comment (<= 64 KiB).
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tail = Buffer.alloc(tailLen);
  readFully(file, fd, tail, size - tailLen);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_SIZE + tail.readUInt16LE(i + 20) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt('end of central directory record not found (not a zip archive, or truncated)');
  const eocdPos = size - tailLen + eocd;

  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) {
    throw corrupt('multi-disk (split) zip archives are not supported');
  }

  // ZIP64: a locator right before the EOCD points at the 64-bit EOCD record.
  if (eocdPos >= 20) {
    const loc = Buffer.alloc(20);
    readFully(file, fd, loc, eocdPos - 20);
    if (loc.readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
      const z64Pos = readU64(loc, 8, file, 'ZIP64 EOCD offset');
      if (z64Pos + 56 > eocdPos - 20) {
        throw corrupt('ZIP64 end of central directory record lies outside the file', { found: `offset ${z64Pos}` });
      }
      const z64 = Buffer.alloc(56);
      readFully(file, fd, z64, z64Pos);
      if (z64.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw corrupt('ZIP64 end of central directory record has a bad signature');
      count = readU64(z64, 32, file, 'ZIP64 entry count');
      cdSize = readU64(z64, 40, file, 'ZIP64 central directory size');
      cdOffset = readU64(z64, 48, file, 'ZIP64 central directory offset');
    }
  }

  if (cdOffset + cdSize > eocdPos) {
    throw corrupt('central directory lies outside the file', {
      expected: `to end before byte ${eocdPos}`,
      found: `offset ${cdOffset} + size ${cdSize}`,
    });
  }
  const cd = Buffer.alloc(cdSize);
  readFully(file, fd, cd, cdOffset);

  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) {
      throw corrupt(`central directory entry ${i} of ${count} is malformed`, { found: `at directory offset ${p}` });
    }
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let csize = cd.readUInt32LE(p + 20);
    let usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localOffset = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) throw corrupt(`central directory entry ${i} runs past the directory`);
    const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);

    // ZIP64 extended information: present fields replace the 0xFFFFFFFF placeholders, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = cd.readUInt16LE(x);
      const len = cd.readUInt16LE(x + 2);
      if (x + 4 + len > xEnd) throw corrupt(`extra field of '${name}' runs past its entry`, { key: name });
      if (id === 0x0001) {
        let q = x + 4;
        const take = (what: string): number => {
          if (q + 8 > x + 4 + len) throw corrupt(`ZIP64 extra field of '${name}' is too short for ${what}`, { key: name });
          const v = readU64(cd, q, file, what);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = take('uncompressed size');
        if (csize === 0xffffffff) csize = take('compressed size');
        if (localOffset === 0xffffffff) localOffset = take('local header offset');
      }
      x += 4 + len;
    }

    if (flags & 0x1) throw new WeightFileError(file, `entry '${name}' is encrypted, which is not supported`, { key: name });
    if (method !== 0 && method !== 8) {
      throw new WeightFileError(file, `entry '${name}' uses compression method ${method}`, {
        key: name,
        expected: '0 (stored) or 8 (deflate)',
        found: `${method}`,
      });
    }
    if (localOffset + 30 > cdOffset) {
      throw corrupt(`entry '${name}' local header lies outside the data area`, { key: name, found: `offset ${localOffset}` });
    }
    entries.push(makeEntry(file, { name, method, compressedSize: csize, uncompressedSize: usize, crc32: crc, localHeaderOffset: localOffset }, cdOffset));
    p = end;
  }
  return entries;
}

function makeEntry(file: string, e: Omit<ZipEntry, 'read'>, dataAreaEnd: number): ZipEntry {
  return {
    ...e,
    read(): Buffer {
      const corrupt = (problem: string, details: ConstructorParameters<typeof WeightFileError>[2] = {}) =>
        new WeightFileError(file, problem, { key: e.name, hint: 'the archive is truncated or corrupt; download or save it again', ...details });
      if (e.uncompressedSize > 0xffffffff) {
        throw new WeightFileError(file, `entry '${e.name}' is too large to load in one piece`, { key: e.name, found: `${e.uncompressedSize} bytes` });
      }
      const fd = openForReading(file);
      try {
        const lh = Buffer.alloc(30);
        readFully(file, fd, lh, e.localHeaderOffset, e.name);
        if (lh.readUInt32LE(0) !== SIG_LOCAL) throw corrupt(`local header of '${e.name}' has a bad signature`);
        // Sizes come from the central directory (local ones may be deferred to a data descriptor),
        // but the name/extra lengths must come from the local header itself.
        const dataStart = e.localHeaderOffset + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
        if (dataStart + e.compressedSize > dataAreaEnd) {
          throw corrupt(`data of '${e.name}' runs past the end of the archive data`, {
            expected: `end <= ${dataAreaEnd}`,
            found: `${dataStart} + ${e.compressedSize}`,
          });
        }
        const raw = Buffer.alloc(e.compressedSize);
        readFully(file, fd, raw, dataStart, e.name);
        let out: Buffer;
        if (e.method === 0) {
          out = raw;
        } else {
          try {
            out = zlib.inflateRawSync(raw);
          } catch (err) {
            throw corrupt(`cannot inflate '${e.name}' (${(err as Error).message})`, { cause: err });
          }
        }
        if (out.length !== e.uncompressedSize) {
          throw corrupt(`entry '${e.name}' has the wrong size`, { expected: `${e.uncompressedSize} bytes`, found: `${out.length}` });
        }
        const crc = crc32(out);
        if (crc !== e.crc32) {
          throw corrupt(`entry '${e.name}' fails its CRC-32 check`, { expected: hex32(e.crc32), found: hex32(crc) });
        }
        return out;
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

function readU64(buf: Buffer, at: number, file: string, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WeightFileError(file, `${what} is out of range`, { found: `${v}` });
  return Number(v);
}

function hex32(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE); native zlib.crc32 where this Node has it (>= 20.15), table-driven otherwise. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
  if (native) return native(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
