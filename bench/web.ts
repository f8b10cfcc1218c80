/**
 * `npm run bench:web -- [--runs N] [--threads T] [--webgpu] [--out FILE]`: the browser app's speed
 * in headless Chromium (Debian's chromium, playwright-core), beside onnxruntime-node in the same
 * run, with the packaged default model on the same 512 x 512 aligned face:
 *   - page load to first result: from navigation (a fresh browser profile, no cache) until the
 *     first restored face is shown, the model downloaded from the local server and compiled;
 *   - time per 512 face in the page (decode, restore, draw), median of --runs (default 3) after it;
 *   - the same face with onnxruntime-node (OSDFace.restore, --threads), median of --runs.
 * WASM with --threads (default 2) threads; with --webgpu also WebGPU (SwiftShader's adapter here:
 * a CPU emulation, so its time says nothing about a real GPU). Output: a markdown table on
 * stdout, the figures as JSON with --out.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { parseArgs } from 'node:util';
import { OSDFace } from '../src/osdface.js';
import { serveWebApp } from '../test/web-server.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const face = path.resolve(repoRoot, '../shared/data/real-lq/codeformer-gray_067_David_Beckham_00.png');
const CHROMIUM = process.env.OSDFACE_CHROMIUM ?? '/usr/bin/chromium';
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan', '--use-angle=swiftshader'];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function waitState(page: Page, states: string[], timeout: number): Promise<string> {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), states, { timeout });
  return page.evaluate(() => document.body.dataset.state ?? '');
}

interface PageFigures { backend: string; loadToFirstResultS: number; perFaceS: number[]; profileMs: Record<string, number> }

async function benchPage(url: string, args: string[], query: string, runs: number, timeout: number): Promise<PageFigures> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), ...args] });
  try {
    const page = await browser.newPage();
    const t0 = Date.now();
    await page.goto(`${url}?${query}&sw=0`);
    if ((await waitState(page, ['ready', 'error'], timeout)) !== 'ready') throw new Error(`page: ${await page.textContent('#error')}`);
    await page.check('input[name=mode][value=aligned]');
    await page.setInputFiles('#file', face);
    if ((await waitState(page, ['done', 'error'], timeout)) !== 'done') throw new Error(`page: ${await page.textContent('#error')}`);
    const loadToFirstResultS = (Date.now() - t0) / 1000;
    const perFaceS: number[] = [];
    await page.evaluate(() => { for (const k of Object.keys((globalThis as any).osdfaceProfile)) delete (globalThis as any).osdfaceProfile[k]; });
    for (let i = 0; i < runs; i++) {
      await page.evaluate(() => { document.body.dataset.state = 'ready'; });
      await page.setInputFiles('#file', []);
      await page.setInputFiles('#file', face);
      if ((await waitState(page, ['done', 'error'], timeout)) !== 'done') throw new Error(`page: ${await page.textContent('#error')}`);
      perFaceS.push((await page.evaluate(() => (globalThis as any).osdfaceTimings.lastRestoreMs as number)) / 1000);
    }
    const profileMs = await page.evaluate(() => ({ ...(globalThis as any).osdfaceProfile })) as Record<string, number>;
    for (const k of Object.keys(profileMs)) profileMs[k] = Math.round(profileMs[k]! / runs);
    const backend = (await page.textContent('#backend')) ?? '?';
    return { backend, loadToFirstResultS, perFaceS, profileMs };
  } finally {
    await browser.close();
  }
}

const { values: flags } = parseArgs({ options: { runs: { type: 'string' }, threads: { type: 'string' }, webgpu: { type: 'boolean' }, out: { type: 'string' } } });
const runs = Number(flags['runs'] ?? 3);
const threads = Number(flags['threads'] ?? 2);

execFileSync(process.execPath, [path.join(repoRoot, 'web/scripts/build.mjs')], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
const server = await serveWebApp(path.join(repoRoot, 'web/dist'));
const rows: { what: string; perFaceS: number; loadToFirstResultS?: number; detail?: string }[] = [];
const json: Record<string, unknown> = { runs, threads, face: path.basename(face), date: new Date().toISOString() };
try {
  const wasm = await benchPage(server.url, [], `backend=wasm&threads=${threads}`, runs, 600_000);
  json['wasm'] = wasm;
  rows.push({ what: `Chromium ${wasm.backend}`, perFaceS: median(wasm.perFaceS), loadToFirstResultS: wasm.loadToFirstResultS, detail: JSON.stringify(wasm.profileMs) });
  if (flags['webgpu']) {
    const gpu = await benchPage(server.url, WEBGPU_FLAGS, 'backend=webgpu', 1, 1_200_000);
    json['webgpu'] = gpu;
    rows.push({ what: `Chromium ${gpu.backend}`, perFaceS: median(gpu.perFaceS), loadToFirstResultS: gpu.loadToFirstResultS, detail: JSON.stringify(gpu.profileMs) });
  }
} finally {
  await server.close();
}
const model = await OSDFace.load({ threads });
const nodeTimes: number[] = [];
await model.restore(face);
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  await model.restore(face);
  nodeTimes.push((performance.now() - t) / 1000);
}
await model.dispose();
json['node'] = { perFaceS: nodeTimes };
rows.push({ what: `onnxruntime-node, ${threads} threads`, perFaceS: median(nodeTimes) });

const nodeMedian = median(nodeTimes);
console.log(`| runtime | time per 512 face (median of ${runs}) | x onnxruntime-node | page load to first result |`);
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.what} | ${r.perFaceS.toFixed(2)} s | ${(r.perFaceS / nodeMedian).toFixed(2)} | ${r.loadToFirstResultS !== undefined ? `${r.loadToFirstResultS.toFixed(1)} s` : ''} |`);
for (const r of rows) if (r.detail) console.log(`${r.what}: ms per graph run, by inputs: ${r.detail}`);
if (typeof flags['out'] === 'string') fs.writeFileSync(flags['out'], JSON.stringify(json, null, 2));
