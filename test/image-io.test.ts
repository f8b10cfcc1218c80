import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import {
  ImageError,
  type RgbImage,
  decodeImage,
  encodeImage,
  fromSquareTensor,
  toSquareTensor,
  writeImageAtomic,
} from '../src/image/io.js';
import { floatTensor } from '../src/tensor.js';
import { realLq, tempDir } from './helpers.js';

const noRealLq = fs.existsSync(realLq) ? false : `face images not found at ${realLq}`;

/** A w x h RGB image whose pixel (x, y) channel c is `f(x, y, c)`. */
function rgb(width: number, height: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[3 * (y * width + x) + c] = f(x, y, c);
  return { data, width, height, channels: 3 };
}

/** Pixel (x, y) of an RGB image. */
function px(img: RgbImage, x: number, y: number): number[] {
  const i = 3 * (y * img.width + x);
  return [...img.data.subarray(i, i + 3)];
}

/** Pixel (x, y) of a (1, 3, S, S) tensor, turned back into the bytes k it holds as k/255 (NaN if it is not exactly one). */
function tpx(t: { shape: number[]; data: Float32Array }, x: number, y: number): number[] {
  const s = t.shape[3];
  return [0, 1, 2].map((c) => {
    const v = t.data[c * s * s + y * s + x];
    const k = Math.round(v * 255);
    return v === Math.fround(k / 255) ? k : NaN;
  });
}

const pseudoRandom = (x: number, y: number, c: number) => (x * 73 + y * 151 + c * 89 + x * y * 7) % 256;

async function throwsImageError(p: Promise<unknown>, file: string, ...fragments: string[]): Promise<ImageError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ImageError, `expected ImageError, got ${String(caught)}`);
  assert.equal(caught.file, file);
  assert.ok(caught.message.startsWith(`${file}: cannot `), `message should start with the file: ${caught.message}`);
  for (const f of fragments) assert.ok(caught.message.includes(f), `message should contain '${f}': ${caught.message}`);
  return caught;
}

test('square image: tensor holds k/255 exactly and comes back identical', async () => {
  const img = rgb(5, 5, pseudoRandom);
  const { tensor, crop } = toSquareTensor(img);
  assert.deepEqual(tensor.shape, [1, 3, 5, 5]);
  assert.deepEqual(crop, { left: 0, top: 0, width: 5, height: 5, size: 5 });
  // CHW layout, values k/255 as float32
  assert.equal(tensor.data[0], Math.fround(img.data[0] / 255));
  assert.equal(tensor.data[25 + 2 * 5 + 3], Math.fround(px(img, 3, 2)[1] / 255));
  for (let k = 0; k < 256; k++) {
    const t = toSquareTensor({ data: new Uint8Array([k, k, k]), width: 1, height: 1, channels: 3 }).tensor;
    assert.equal(t.data[0], Math.fround(k / 255), `k=${k}`);
  }
  const back = await fromSquareTensor(tensor, crop);
  assert.equal(back.width, 5);
  assert.equal(back.height, 5);
  assert.equal(back.channels, 3);
  assert.deepEqual(back.data, img.data);
});

test('wide 7x4 image: rows 0 and 3 are replicated (1 above, 2 below) and cropped back', async () => {
  const img = rgb(7, 4, pseudoRandom);
  const { tensor, crop } = toSquareTensor(img);
  assert.deepEqual(tensor.shape, [1, 3, 7, 7]);
  assert.deepEqual(crop, { left: 0, top: 1, width: 7, height: 4, size: 7 });
  for (let x = 0; x < 7; x++) {
    assert.deepEqual(tpx(tensor, x, 0), px(img, x, 0), `top pad, x=${x}`);
    for (let y = 0; y < 4; y++) assert.deepEqual(tpx(tensor, x, y + 1), px(img, x, y));
    assert.deepEqual(tpx(tensor, x, 5), px(img, x, 3), `bottom pad, x=${x}`);
    assert.deepEqual(tpx(tensor, x, 6), px(img, x, 3), `bottom pad, x=${x}`);
  }
  const back = await fromSquareTensor(tensor, crop);
  assert.deepEqual([back.width, back.height], [7, 4]);
  assert.deepEqual(back.data, img.data);
});

test('tall 4x7 and 4x6 images pad columns the same way', async () => {
  const tall = rgb(4, 7, pseudoRandom);
  const { tensor, crop } = toSquareTensor(tall);
  assert.deepEqual(crop, { left: 1, top: 0, width: 4, height: 7, size: 7 });
  for (let y = 0; y < 7; y++) {
    assert.deepEqual(tpx(tensor, 0, y), px(tall, 0, y));
    assert.deepEqual(tpx(tensor, 1, y), px(tall, 0, y));
    assert.deepEqual(tpx(tensor, 4, y), px(tall, 3, y));
    assert.deepEqual(tpx(tensor, 5, y), px(tall, 3, y));
    assert.deepEqual(tpx(tensor, 6, y), px(tall, 3, y));
  }
  assert.deepEqual((await fromSquareTensor(tensor, crop)).data, tall.data);

  const even = toSquareTensor(rgb(4, 6, pseudoRandom));
  assert.deepEqual(even.crop, { left: 1, top: 0, width: 4, height: 6, size: 6 });
});

test('fromSquareTensor rounds half up, clamps, and resizes to the square or to opts.size', async () => {
  const t = floatTensor([1, 3, 2, 2], Float32Array.from([0.5, -0.2, 1.3, NaN, 1 / 255, 2 / 255, 0.999, 0, 0.25, 0.75, 0.1, 0.6]));
  const crop = { left: 0, top: 0, width: 2, height: 2, size: 2 };
  const out = await fromSquareTensor(t, crop);
  // 0.5*255 = 127.5 -> 128; 0.25*255 = 63.75 -> 64; 0.75*255 = 191.25 -> 191
  assert.deepEqual([...out.data], [128, 1, 64, 0, 2, 191, 255, 255, 26, 0, 0, 153]);

  // A smooth 16x16 network output for a 7x4 image (square 7): resized with lanczos3, then cropped.
  const n = 16;
  const big = floatTensor([1, 3, n, n]);
  for (let c = 0; c < 3; c++) for (let i = 0; i < n * n; i++) big.data[c * n * n + i] = c === 0 ? 0.5 : c === 1 ? (i % n) / (n - 1) : 0.2;
  const wide = { left: 0, top: 1, width: 7, height: 4, size: 7 };
  const small = await fromSquareTensor(big, wide);
  assert.deepEqual([small.width, small.height, small.data.length], [7, 4, 7 * 4 * 3]);
  for (let y = 0; y < 4; y++) {
    assert.equal(px(small, 0, y)[0], 128);
    assert.equal(px(small, 3, y)[2], 51);
    assert.ok(px(small, 0, y)[1] < 20 && px(small, 6, y)[1] > 235, 'horizontal ramp kept');
  }

  // opts.size: the longer side becomes 14, the crop scales with it (top 1 -> 2, height 4 -> 8).
  const sized = await fromSquareTensor(big, wide, { size: 14 });
  assert.deepEqual([sized.width, sized.height], [14, 8]);
  const tall = await fromSquareTensor(big, { left: 1, top: 0, width: 4, height: 7, size: 7 }, { size: 21 });
  assert.deepEqual([tall.width, tall.height], [12, 21]);
  // no resize when N already equals the requested side
  const same = await fromSquareTensor(big, { left: 0, top: 4, width: 16, height: 8, size: 16 }, { size: 16 });
  assert.deepEqual([same.width, same.height], [16, 8]);
  assert.equal(px(same, 15, 0)[1], 255);

  await assert.rejects(fromSquareTensor(floatTensor([1, 3, 2, 3]), crop), /\(1, 3, N, N\)/);
  await assert.rejects(fromSquareTensor(t, { left: 1, top: 0, width: 2, height: 2, size: 2 }), /does not fit/);
});

test('grayscale PNG decodes to RGB with equal channels and no alpha', async () => {
  const grey = Buffer.from([0, 50, 100, 150, 200, 250]);
  const png = await sharp(grey, { raw: { width: 3, height: 2, channels: 1 } }).toColourspace('b-w').png().toBuffer();
  assert.equal((await sharp(png).metadata()).channels, 1, 'the test file really is single-channel');
  const img = await decodeImage(png);
  assert.deepEqual([img.width, img.height, img.channels, img.sourceFormat], [3, 2, 3, 'png']);
  assert.equal(img.alpha, undefined);
  assert.deepEqual([...img.data], [...grey].flatMap((v) => [v, v, v]));
});

test('RGBA PNG keeps its alpha apart, and encodeImage puts it back', async () => {
  const w = 4, h = 3;
  const rgba = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? (i * 17) % 256 : (i * 31) % 256));
  const png = await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer();
  const img = await decodeImage(png);
  assert.deepEqual([img.width, img.height, img.channels], [4, 3, 3]);
  assert.ok(img.alpha, 'alpha kept');
  assert.deepEqual([...img.alpha], [...rgba].filter((_, i) => i % 4 === 3));
  assert.deepEqual([...img.data], [...rgba].filter((_, i) => i % 4 !== 3));

  const again = await decodeImage(await encodeImage(img, 'png', img.alpha));
  assert.deepEqual(again.alpha, img.alpha);
  assert.deepEqual(again.data, img.data);
  // a mismatched alpha is left off; JPEG has none
  assert.equal((await decodeImage(await encodeImage(img, 'png', new Uint8Array(5)))).alpha, undefined);
  assert.equal((await decodeImage(await encodeImage(img, 'jpg', img.alpha))).alpha, undefined);
  const webp = await decodeImage(await encodeImage(img, 'webp', img.alpha));
  assert.deepEqual([webp.sourceFormat, webp.width, webp.height], ['webp', 4, 3]);
  assert.deepEqual(webp.alpha, img.alpha);

  // raw pixel objects: RGBA and grey are converted, bad lengths named
  const fromRaw = await decodeImage({ data: rgba, width: w, height: h, channels: 4 });
  assert.deepEqual(fromRaw.alpha, img.alpha);
  assert.deepEqual(fromRaw.data, img.data);
  assert.equal(fromRaw.sourceFormat, 'raw');
  const g = await decodeImage({ data: new Uint8Array([7, 9]), width: 2, height: 1, channels: 1 });
  assert.deepEqual([...g.data], [7, 7, 7, 9, 9, 9]);
  await throwsImageError(decodeImage({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 }), '<raw pixels>', '10 bytes', '2x2x3 needs 12');
});

test('16-bit PNG decodes to 8-bit', async () => {
  const w = 5, h = 3;
  const u16 = new Uint16Array(w * h * 3).map((_, i) => i * 257 * 5);
  const png = await sharp(u16, { raw: { width: w, height: h, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
  assert.equal((await sharp(png).metadata()).depth, 'ushort', 'the test file really is 16-bit');
  const img = await decodeImage(png);
  assert.deepEqual([img.width, img.height, img.channels, img.data.length], [5, 3, 3, 45]);
  assert.deepEqual([...img.data], [...u16].map((v) => v / 257));
});

test('JPEG with EXIF orientation 6 is rotated upright (width and height swap)', async () => {
  // 16x8: top-left red, top-right green, bottom-left blue, bottom-right white
  const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
  const src = rgb(16, 8, (x, y, c) => colours[(y < 4 ? 0 : 2) + (x < 8 ? 0 : 1)][c]);
  const jpg = await sharp(src.data, { raw: { width: 16, height: 8, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  assert.equal((await sharp(jpg).metadata()).orientation, 6);
  const img = await decodeImage(jpg);
  assert.deepEqual([img.width, img.height, img.channels, img.sourceFormat], [8, 16, 3, 'jpeg']);
  // orientation 6 = rotate 90 degrees clockwise: the old bottom-left is now top-left
  const near = (got: number[], want: number[]) => got.every((v, i) => Math.abs(v - want[i]) <= 40);
  assert.ok(near(px(img, 1, 1), colours[2]), `top-left should be blue: ${px(img, 1, 1)}`);
  assert.ok(near(px(img, 6, 1), colours[0]), `top-right should be red: ${px(img, 6, 1)}`);
  assert.ok(near(px(img, 1, 14), colours[3]), `bottom-left should be white: ${px(img, 1, 14)}`);
});

test('missing, corrupt, empty and directory paths give an ImageError naming the file', async (t) => {
  const dir = tempDir(t, 'osdface-image-');
  const missing = path.join(dir, 'no-such-face.png');
  await throwsImageError(decodeImage(missing), missing, 'cannot read image', 'does not exist');

  const corrupt = path.join(dir, 'corrupt.png');
  fs.writeFileSync(corrupt, 'this is not an image');
  await throwsImageError(decodeImage(corrupt), corrupt, 'cannot read image', 'unsupported');

  const truncated = path.join(dir, 'truncated.png');
  const png = await encodeImage(rgb(32, 32, pseudoRandom), 'png');
  fs.writeFileSync(truncated, png.subarray(0, png.length >> 1));
  await throwsImageError(decodeImage(truncated), truncated, 'cannot read image');

  const empty = path.join(dir, 'empty.jpg');
  fs.writeFileSync(empty, '');
  await throwsImageError(decodeImage(empty), empty, 'empty');
  await throwsImageError(decodeImage(dir), dir, 'directory');
  await throwsImageError(decodeImage(Buffer.from('nope')), '<image bytes>', 'unsupported');
});

test('writeImageAtomic creates folders and leaves no temporary file', async (t) => {
  const dir = tempDir(t, 'osdface-image-');
  const file = path.join(dir, 'a', 'b', 'face.png');
  const img = rgb(6, 3, pseudoRandom);
  await writeImageAtomic(file, await encodeImage(img, 'png'));
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['face.png']);
  const back = await decodeImage(file);
  assert.deepEqual(back.data, img.data);
  // overwriting works too
  await writeImageAtomic(file, await encodeImage(rgb(2, 2, () => 9), 'jpg'));
  assert.deepEqual([(await decodeImage(file)).width, (await decodeImage(file)).sourceFormat], [2, 'jpeg']);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['face.png']);
  // a parent that is a file is reported with the target path
  const blocked = path.join(file, 'x.png');
  await throwsImageError(writeImageAtomic(blocked, Buffer.from('x')), blocked, 'cannot write image');
});

test('real face images decode to 3 channels and survive the square round trip', { skip: noRealLq }, async () => {
  const files = fs.readdirSync(realLq).filter((f) => /\.(png|jpe?g|webp)$/i.test(f));
  assert.ok(files.length > 0, `no images in ${realLq}`);
  for (const f of files) {
    const img = await decodeImage(path.join(realLq, f));
    assert.equal(img.channels, 3, f);
    assert.ok(img.width > 0 && img.height > 0, f);
    assert.equal(img.data.length, img.width * img.height * 3, f);
    const { tensor, crop } = toSquareTensor(img);
    const back = await fromSquareTensor(tensor, crop);
    assert.deepEqual([back.width, back.height], [img.width, img.height], f);
    assert.ok(Buffer.from(back.data).equals(Buffer.from(img.data)), `${f}: round trip changed pixels`);
  }
});
