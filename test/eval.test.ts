import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { encodeImage, type RgbImage } from '../src/image/io.js';
import { evaluatePairs, formatTable, pairFolders, parseMetricList, toJson } from '../src/metrics/evaluate.js';
import { buildReport } from '../src/metrics/report.js';
import { main as evalMain } from '../src/cli/eval.js';
import { repoRoot, shared, tempDir } from './helpers.js';

const NIQE_FILE = path.join(shared, 'weights/niqe_pris_params.npz');

function picture(w: number, h: number, offset = 0): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = 30 + ((i * 37) % 150) + offset;
  return { data, width: w, height: h, channels: 3 };
}

async function put(dir: string, name: string, img: RgbImage | string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const f = path.join(dir, name);
  const ext = path.extname(name).slice(1);
  fs.writeFileSync(f, typeof img === 'string' ? img : await encodeImage(img, ext === 'jpg' ? 'jpg' : 'png'));
  return f;
}

/** Runs the CLI with stdout and stderr captured. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  process.stdout.write = ((s: string) => { out += s; return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => { err += s; return true; }) as typeof process.stderr.write;
  try {
    const code = await evalMain(argv);
    return { code, out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

describe('pairing by base name', () => {
  test('pairs across extensions; lists missing, duplicate and unused files', async (t) => {
    const root = tempDir(t, 'osdface-eval-');
    const [pred, gt, lq] = ['pred', 'gt', 'lq'].map((d) => path.join(root, d)) as [string, string, string];
    const img = picture(16, 16);
    for (const n of ['a.png', 'b.png', 'c.png', 'dup.png', 'dup.jpg']) await put(pred, n, img);
    for (const n of ['a.jpg', 'b.png', 'd.png', 'dup.png']) await put(gt, n, img);
    for (const n of ['a.png', 'e.png']) await put(lq, n, img);
    fs.writeFileSync(path.join(pred, 'notes.txt'), 'not an image');
    const p = pairFolders(pred, gt, lq);
    assert.deepEqual(p.pairs, [
      { name: 'a', pred: path.join(pred, 'a.png'), gt: path.join(gt, 'a.jpg'), lq: path.join(lq, 'a.png') },
      { name: 'b', pred: path.join(pred, 'b.png'), gt: path.join(gt, 'b.png') },
    ]);
    assert.deepEqual(p.problems.map((x) => [x.name, x.kind]), [
      ['b', 'missing-lq'], ['c', 'missing-gt'], ['d', 'missing-pred'], ['dup', 'duplicate-name'], ['e', 'unused-lq'],
    ]);
    assert.match(p.problems.find((x) => x.kind === 'duplicate-name')!.message, /2 images named dup/);
    assert.throws(() => pairFolders(path.join(root, 'nope'), gt), /--pred .*nope is not a folder/);
  });

  test('metric lists: unknown metrics are errors; network metrics are accepted', () => {
    assert.deepEqual(parseMetricList('PSNR, ssim,psnr'), ['psnr', 'ssim']);
    assert.throws(() => parseMetricList('psnr,foo'), /unknown metric 'foo'/);
    assert.deepEqual(parseMetricList('lpips,dists,fid'), ['lpips', 'dists', 'fid']);
    assert.deepEqual(parseMetricList('ids,lmd'), ['ids', 'lmd']);
  });
});

describe('evaluatePairs', () => {
  test('identical pair: psnr inf, ssim 1; offset pair exact; unreadable and size mismatch are recorded', async (t) => {
    const root = tempDir(t, 'osdface-eval-');
    const pred = path.join(root, 'pred');
    const gt = path.join(root, 'gt');
    await put(pred, 'same.png', picture(20, 20));
    await put(gt, 'same.png', picture(20, 20));
    await put(pred, 'off.png', picture(20, 20, 5));
    await put(gt, 'off.png', picture(20, 20));
    await put(pred, 'broken.png', 'this is not a PNG');
    await put(gt, 'broken.png', picture(20, 20));
    await put(pred, 'small.png', picture(12, 20));
    await put(gt, 'small.png', picture(20, 20));
    const r = await evaluatePairs(pairFolders(pred, gt), { metrics: ['psnr', 'ssim', 'psnr_y'] });
    const by = Object.fromEntries(r.images.map((i) => [i.name, i]));
    assert.equal(by.same!.values.psnr, Infinity);
    assert.ok(Math.abs(by.same!.values.ssim! - 1) < 1e-12);
    assert.ok(Math.abs(by.off!.values.psnr! - 20 * Math.log10(255 / 5)) < 1e-12);
    assert.deepEqual(by.broken!.values, {});
    assert.match(by.broken!.errors[0]!, /unreadable restored image: .*broken\.png/);
    assert.match(by.small!.errors[0]!, /size mismatch: restored 12x20, ground truth 20x20/);
    assert.equal(r.count.psnr, 2);
    assert.equal(r.mean.psnr, Infinity); // one identical pair makes the mean infinite, as documented
    assert.ok(Math.abs(r.mean.ssim! - (1 + by.off!.values.ssim!) / 2) < 1e-12);
    const json = toJson(r) as { mean: Record<string, unknown>; images: Record<string, unknown>[] };
    assert.equal(json.mean.psnr, 'inf');
    assert.equal(json.images.find((i) => i.name === 'same')!.psnr, 'inf');
    const table = formatTable(r);
    assert.match(table, /^name +psnr +ssim +psnr_y$/m);
    assert.match(table, /^same +inf +1\.0000 +inf$/m);
    assert.match(table, /^mean +inf/m);
    assert.match(table, /broken: unreadable/);
  });
});

describe('osdface eval', () => {
  async function folders(t: { after(fn: () => void): void }) {
    const root = tempDir(t, 'osdface-eval-cli-');
    const dirs = { pred: path.join(root, 'pred'), gt: path.join(root, 'gt'), lq: path.join(root, 'lq') };
    await put(dirs.pred, 'x.png', picture(24, 24, 3));
    await put(dirs.gt, 'x.png', picture(24, 24));
    await put(dirs.lq, 'x.png', picture(12, 12));
    await put(dirs.pred, 'y.png', picture(24, 24));
    await put(dirs.gt, 'y.png', picture(24, 24));
    return { root, ...dirs };
  }

  test('--json: mean and per-image values; exit 0 when everything pairs', async (t) => {
    const d = await folders(t);
    const r = await run(['--pred', d.pred, '--gt', d.gt, '--json', '--metrics', 'psnr,ssim,ssim_y']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.deepEqual(Object.keys(j.mean), ['psnr', 'ssim', 'ssim_y']);
    assert.deepEqual(j.images.map((i: { name: string }) => i.name), ['x', 'y']);
    assert.ok(Math.abs(j.images[0].psnr - 20 * Math.log10(255 / 3)) < 1e-9);
    assert.equal(j.images[1].psnr, 'inf');
    assert.equal(j.mean.psnr, 'inf');
  });

  test('--y-channel and the plain table', async (t) => {
    const d = await folders(t);
    const r = await run(['--pred', d.pred, '--gt', d.gt, '--y-channel']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^name +psnr_y +ssim_y$/m);
    assert.match(r.out, /^mean +inf +/m);
  });

  test('a missing pair and an unreadable file: listed, exit 1, the rest still evaluated', async (t) => {
    const d = await folders(t);
    await put(d.gt, 'lonely.png', picture(24, 24));
    await put(d.pred, 'bad.png', 'garbage');
    await put(d.gt, 'bad.png', picture(24, 24));
    const r = await run(['--pred', d.pred, '--gt', d.gt]);
    assert.equal(r.code, 1);
    assert.match(r.out, /^x +/m);
    assert.match(r.out, /lonely: missing-pred: no restored image named lonely/);
    assert.match(r.out, /bad: unreadable restored image/);
    const j = JSON.parse((await run(['--pred', d.pred, '--gt', d.gt, '--json'])).out);
    assert.equal(j.problems[0].kind, 'missing-pred');
    assert.match(j.images.find((i: { name: string }) => i.name === 'bad').errors[0], /unreadable/);
  });

  test('--report writes an HTML page with the three crops and the numbers', async (t) => {
    const d = await folders(t);
    await put(d.gt, 'lonely.png', picture(24, 24));
    const report = path.join(d.root, 'out', 'report.html');
    const r = await run(['--pred', d.pred, '--gt', d.gt, '--lq', d.lq, '--report', report]);
    assert.equal(r.code, 1); // lonely has no restored image; y has no LQ
    const html = fs.readFileSync(report, 'utf8');
    // The crops are PNG files beside the page (x: 3 crops, y: restored + GT), not base64 in it.
    const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
    assert.equal(srcs.length, 5);
    for (const s of srcs) assert.match(s, /^report_files\/\d{4}_\w+_(lq|restored|gt)\.png$/);
    for (const s of srcs) assert.ok(fs.existsSync(path.join(path.dirname(report), s)), s);
    assert.match(html, /no LQ image/);
    assert.match(html, /lonely: missing-pred/);
    assert.match(html, /<h2>x<\/h2><table class="nums"><tr><th>psnr &uarr;<\/th><td>38\.59<\/td>/);
    assert.deepEqual(fs.readdirSync(path.dirname(report)).sort(), ['report.html', 'report_files']);
  });

  test('usage errors exit 2: missing folder, unknown metric, network metrics or niqe without their files', async (t) => {
    const d = await folders(t);
    assert.equal((await run(['--pred', d.pred])).code, 2);
    assert.match((await run(['--pred', path.join(d.root, 'none'), '--gt', d.gt])).err, /is not a folder/);
    assert.equal((await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'psnr,bogus'])).code, 2);
    const l = await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'lpips']);
    assert.equal(l.code, 2);
    assert.match(l.err, /cannot use lpips: lpips: the backbone \(--lpips-backbone\) and the linear layers \(--lpips-lin\) not given\. LPIPS .*AlexNet .*alexnet-owt-7be5be79\.pth/);
    const missing = await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'lpips', '--lpips-backbone', path.join(d.root, 'alexnet.pth'), '--lpips-lin', path.join(d.root, 'alex.pth')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /alexnet\.pth does not exist/);
    assert.match((await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'dists'])).err, /cannot use dists: .*--dists-weights.*vgg16-397923af\.pth/);
    const fidErr = await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'fid']);
    assert.equal(fidErr.code, 2);
    assert.match(fidErr.err, /cannot use fid: .*--fid-inception.*pt_inception-2015-12-05/);
    assert.match((await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'lpips', '--lpips-net', 'squeeze'])).err, /--lpips-net must be alex or vgg/);
    const saved = process.env.OSDFACE_NIQE_PARAMS;
    delete process.env.OSDFACE_NIQE_PARAMS;
    try {
      assert.match((await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'niqe'])).err, /--niqe-params/);
    } finally {
      if (saved !== undefined) process.env.OSDFACE_NIQE_PARAMS = saved;
    }
    assert.match((await run(['--pred', d.pred, '--gt', d.gt, '--metrics', 'niqe', '--niqe-params', path.join(d.root, 'no.npz')])).err, /no\.npz/);
  });

  test('niqe through the CLI (shared parameters)', async (t) => {
    const root = tempDir(t, 'osdface-eval-niqe-');
    const big = picture(192, 96);
    await put(path.join(root, 'p'), 'z.png', big);
    await put(path.join(root, 'g'), 'z.png', big);
    const r = await run(['--pred', path.join(root, 'p'), '--gt', path.join(root, 'g'), '--metrics', 'niqe', '--niqe-params', NIQE_FILE, '--json']);
    assert.equal(r.code, 0, r.err);
    const v = JSON.parse(r.out).images[0].niqe;
    assert.ok(typeof v === 'number' && v > 0, String(v));
  });

  test('the report escapes names', async () => {
    const html = await buildReport({ metrics: ['psnr'], mean: {}, count: {}, images: [], problems: [{ name: '<b>', kind: 'missing-gt', files: [], message: 'a & b' }] });
    assert.match(html, /&lt;b&gt;: missing-gt: a &amp; b/);
  });
});

test('osdface eval --metrics ids: 1 for the same face, lower for another person', async (t) => {
  const root = tempDir(t, 'osdface-eval-ids-');
  const { spawnSync } = await import('node:child_process');
  const lq = path.join(shared, 'data/real-lq');
  for (const d of ['p', 'g']) fs.mkdirSync(path.join(root, d));
  fs.copyFileSync(path.join(lq, 'codeformer_0143.png'), path.join(root, 'p/a.png'));
  fs.copyFileSync(path.join(lq, 'codeformer_0143.png'), path.join(root, 'g/a.png'));
  fs.copyFileSync(path.join(lq, 'codeformer_0240.png'), path.join(root, 'p/b.png'));
  fs.copyFileSync(path.join(lq, 'codeformer_0342.png'), path.join(root, 'g/b.png'));
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'eval', '--pred', path.join(root, 'p'), '--gt', path.join(root, 'g'), '--metrics', 'ids', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { images: { name: string; ids: number }[] };
  const ids = Object.fromEntries(out.images.map((i) => [i.name, i.ids]));
  assert.ok(Math.abs(ids['a']! - 1) < 1e-6, `same face ${ids['a']}`);
  assert.ok(ids['b']! < 0.99, `different people ${ids['b']}`);
});

describe('network metrics in the evaluation (stand-in networks)', () => {
  /** Stand-ins with the metric objects' interfaces: the evaluation's bookkeeping is what is tested. */
  const pairDistance = (scale: number) => ({ distance: async (a: RgbImage, b: RgbImage) => scale * Math.abs(a.data[0]! - b.data[0]!) });
  /** Feature [offset, 0] of picture(w, h, offset): one varying dimension. */
  const features = { features: async (img: RgbImage) => Float32Array.of(img.data[0]! - 30, 0) };

  async function threePairs(t: { after(fn: () => void): void }) {
    const root = tempDir(t, 'osdface-eval-fid-');
    const pred = path.join(root, 'pred');
    const gt = path.join(root, 'gt');
    for (const [name, off] of [['a', 0], ['b', 2], ['c', 4]] as const) {
      await put(pred, `${name}.png`, picture(16, 16, off));
      await put(gt, `${name}.png`, picture(16, 16, off + 1));
    }
    return { root, pred, gt };
  }

  test('lpips / dists per pair; fid once for the set against statistics (closed form), not per image', async (t) => {
    const d = await threePairs(t);
    // pred features x = 0, 2, 4: mean 2, variance 4 (N - 1); reference mu (1, 1), sigma diag(9, 0.25):
    // FID = |(2, 0) - (1, 1)|² + (sqrt 4 - sqrt 9)² + 0.25 = 2 + 1 + 0.25
    const stats = { dim: 2, mu: Float64Array.of(1, 1), sigma: Float64Array.of(9, 0, 0, 0.25) };
    const r = await evaluatePairs(pairFolders(d.pred, d.gt), {
      metrics: ['lpips', 'dists', 'fid'], lpips: pairDistance(0.5), dists: pairDistance(0.25), fid: { features, reference: { stats, label: 'stats.npz' } },
    });
    assert.equal(r.images[0]!.values.lpips, 0.5);
    assert.equal(r.images[1]!.values.dists, 0.25);
    assert.ok(r.images.every((i) => i.values.fid === undefined));
    assert.ok(Math.abs(r.mean.fid! - 3.25) < 1e-12, String(r.mean.fid));
    assert.equal(r.count.fid, 3);
    assert.equal(r.reference?.fid, 'stats.npz');
    const j = toJson(r) as { mean: Record<string, unknown>; images: Record<string, unknown>[]; reference: Record<string, string> };
    assert.equal(j.mean.fid, r.mean.fid);
    assert.ok(j.images.every((i) => !('fid' in i) && typeof i.lpips === 'number'));
    assert.equal(j.reference.fid, 'stats.npz');
    const table = formatTable(r);
    assert.match(table, /fid: one value for the set, 3 restored images against stats\.npz/);
    assert.match(table.split('\n')[1]!, /^a\s+0\.5000\s+0\.2500\s*$/); // no per-image fid cell
    const html = await buildReport(r);
    assert.match(html, /\(n=3, set\)/);
    assert.doesNotMatch(html, /<table class="nums">[^]*?fid/);
  });

  test('fid against the ground truth, and too few images is a listed set-level error', async (t) => {
    const d = await threePairs(t);
    // gt features 1, 3, 5: same spread, mean shifted by 1 -> FID = 1
    const r = await evaluatePairs(pairFolders(d.pred, d.gt), { metrics: ['fid'], fid: { features, reference: 'gt' } });
    assert.ok(Math.abs(r.mean.fid! - 1) < 1e-9, String(r.mean.fid));
    assert.equal(r.reference?.fid, 'ground truth (3 images)');
    fs.rmSync(path.join(d.pred, 'b.png'));
    fs.rmSync(path.join(d.pred, 'c.png'));
    const one = await evaluatePairs(pairFolders(d.pred, d.gt), { metrics: ['fid'], fid: { features, reference: 'gt' } });
    assert.equal(one.mean.fid, undefined);
    assert.match(one.setErrors![0]!, /fid: fid needs at least 2 images/);
    assert.match(formatTable(one), /\(set\) fid: fid needs at least 2 images/);
  });
});
