/**
 * `osdface web` (src/webserve, src/cli/web.ts): the headers that make the page cross-origin
 * isolated, the Content-Types browsers insist on, nothing served from outside the app folder or
 * beyond the packaged model's manifest (raw HTTP requests, so no client normalises the path),
 * the errors for a taken port and a missing app, Ctrl-C, and one page load in headless Chromium.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultModelDir } from '../src/pipeline/default_model.js';
import { APP_DIR_ENV, AppDirError, resolveAppDir } from '../src/webserve/app_dir.js';
import { MODEL_URL_PREFIX } from '../src/webserve/model_files.js';
import { ListenError, startWebServer, type RunningWebServer } from '../src/webserve/server.js';
import { launchChromium } from './browser.js';
import { repoRoot, tempDir } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const SECRET = 'TOP-SECRET-NOT-FOR-THE-PAGE';

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request with `target` sent exactly as written (node:http does not normalise it). */
function raw(port: number, target: string, method = 'GET'): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('latin1') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * <tmp>/secret.txt and <tmp>/app/: an app with one file of each type the page loads, a dotfile,
 * and symbolic links out of the folder (a file, and a folder above it).
 */
function makeApp(tmp: string): string {
  fs.writeFileSync(path.join(tmp, 'secret.txt'), SECRET);
  const app = path.join(tmp, 'app');
  fs.mkdirSync(path.join(app, 'assets'), { recursive: true });
  fs.writeFileSync(path.join(app, 'index.html'), '<!doctype html><meta charset="utf-8"><title>osdface test app</title><p>app</p>');
  const files: Record<string, string | Buffer> = {
    'assets/app.mjs': 'export const x = 1;\n',
    'assets/index.js': 'console.log(1);\n',
    'assets/ort-wasm-simd-threaded.wasm': Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]),
    'assets/model.onnx': Buffer.from([8, 7, 18, 4]),
    'assets/weights.safetensors': Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
    'manifest.webmanifest': '{"name":"osdface"}',
    'data.json': '{"a":1}',
    '.env': SECRET,
  };
  for (const [f, body] of Object.entries(files)) fs.writeFileSync(path.join(app, f), body);
  fs.symlinkSync(path.join(tmp, 'secret.txt'), path.join(app, 'leak.txt'));
  fs.symlinkSync(tmp, path.join(app, 'up'));
  return app;
}

/** A copy of the packaged model plus a file its manifest does not list, a cache folder, and a listed file replaced by a link out. */
function makeModel(tmp: string): string {
  const dir = path.join(tmp, 'model');
  fs.cpSync(defaultModelDir(), dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'notes.txt'), SECRET);
  fs.mkdirSync(path.join(dir, 'optimized'));
  fs.writeFileSync(path.join(dir, 'optimized', 'unet.onnx'), SECRET);
  fs.rmSync(path.join(dir, 'vre.onnx.data'));
  fs.symlinkSync(path.join(tmp, 'secret.txt'), path.join(dir, 'vre.onnx.data'));
  return dir;
}

describe('osdface web server', () => {
  let server: RunningWebServer;
  let tmp: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'osdface-web-'));
    server = await startWebServer({ appDir: makeApp(tmp), modelDir: makeModel(tmp), port: 0 });
  });
  after(async () => {
    await server?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('listens on 127.0.0.1 by default and serves index.html at /', async () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const a = await raw(server.port, '/');
    assert.equal(a.status, 200);
    assert.match(a.body, /osdface test app/);
  });

  test('every response, 200, 404 and 400 alike, carries COOP, COEP and CORP', async () => {
    for (const target of ['/', '/assets/app.mjs', '/no-such-file.js', '/../secret.txt', `${MODEL_URL_PREFIX}manifest.json`]) {
      const a = await raw(server.port, target);
      assert.equal(a.headers['cross-origin-opener-policy'], 'same-origin', target);
      assert.equal(a.headers['cross-origin-embedder-policy'], 'require-corp', target);
      assert.equal(a.headers['cross-origin-resource-policy'], 'same-origin', target);
      assert.equal(a.headers['x-content-type-options'], 'nosniff', target);
    }
  });

  test('Content-Type: wasm, onnx, mjs/js, webmanifest, json, safetensors, html', async () => {
    const expected: Record<string, string> = {
      '/assets/ort-wasm-simd-threaded.wasm': 'application/wasm',
      '/assets/model.onnx': 'application/octet-stream',
      '/assets/app.mjs': 'text/javascript; charset=utf-8',
      '/assets/index.js': 'text/javascript; charset=utf-8',
      '/manifest.webmanifest': 'application/manifest+json; charset=utf-8',
      '/data.json': 'application/json; charset=utf-8',
      '/assets/weights.safetensors': 'application/octet-stream',
      '/index.html': 'text/html; charset=utf-8',
    };
    for (const [target, type] of Object.entries(expected)) {
      const a = await raw(server.port, target);
      assert.equal(a.status, 200, target);
      assert.equal(a.headers['content-type'], type, target);
    }
    // HEAD too (what a cache or a size check asks)
    const h = await raw(server.port, '/assets/ort-wasm-simd-threaded.wasm', 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(h.headers['content-type'], 'application/wasm');
    assert.equal(h.headers['content-length'], '8');
  });

  test('nothing outside the app folder: traversal, encoded dots and slashes, absolute paths, links out, dotfiles', async () => {
    const secretAbs = path.join(tmp, 'secret.txt');
    const attempts = [
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E/%2e%2e/secret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/..%2fsecret.txt',
      '/assets/..%2F..%2Fsecret.txt',
      '/%2e%2e%2fsecret.txt',
      '/..%5csecret.txt',
      '/..\\secret.txt',
      '/assets/..\\..\\secret.txt',
      '/.%2e/secret.txt',
      '/%252e%252e/secret.txt',
      '/secret.txt%00.html',
      '//secret.txt',
      `/${secretAbs}`,
      `/${secretAbs.slice(1)}`,
      `//${secretAbs}`,
      '/%2F' + secretAbs.slice(1).replaceAll('/', '%2F'),
      `http://127.0.0.1:${server.port}/../secret.txt`,
      '/leak.txt',
      '/up/secret.txt',
      '/.env',
      '/./.env',
      `${MODEL_URL_PREFIX}../../secret.txt`,
      `${MODEL_URL_PREFIX}%2e%2e/%2e%2e/secret.txt`,
    ];
    for (const target of attempts) {
      const a = await raw(server.port, target);
      assert.ok([400, 403, 404].includes(a.status), `${target}: status ${a.status}`);
      assert.ok(!a.body.includes(SECRET), `${target} leaked the secret`);
    }
  });

  test('the packaged model under its prefix: the files its manifest lists, nothing else', async () => {
    const m = await raw(server.port, `${MODEL_URL_PREFIX}manifest.json`);
    assert.equal(m.status, 200);
    assert.equal(m.headers['content-type'], 'application/json; charset=utf-8');
    const manifest = JSON.parse(m.body) as { graphs: Record<string, string>; codebookFile: string };
    for (const f of [manifest.graphs['unet']!, `${manifest.graphs['unet']!}.data`, manifest.codebookFile]) {
      const a = await raw(server.port, `${MODEL_URL_PREFIX}${f}`, 'HEAD');
      assert.equal(a.status, 200, f);
      assert.equal(a.headers['content-type'], 'application/octet-stream', f);
    }
    // not in the manifest, a folder, a listed name that is a link out of the model directory
    for (const f of ['notes.txt', 'optimized/unet.onnx', 'optimized/', '', 'vre.onnx.data']) {
      const a = await raw(server.port, `${MODEL_URL_PREFIX}${f}`);
      assert.equal(a.status, 404, f);
      assert.ok(!a.body.includes(SECRET), `${f} leaked`);
    }
  });

  test('only GET and HEAD', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const a = await raw(server.port, '/index.html', method);
      assert.ok(a.status === 404 || a.status === 405, `${method}: ${a.status}`);
    }
  });

  test('a port in use: ListenError saying what to do', async (t) => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    t.after(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    await assert.rejects(startWebServer({ appDir: path.join(tmp, 'app'), modelDir: null, port }), (e: unknown) => {
      assert.ok(e instanceof ListenError);
      assert.match(e.message, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
      assert.match(e.message, /--port 0/);
      return true;
    });
  });

  test('headless Chromium loads the page cross-origin isolated (COOP/COEP work)', async (t) => {
    const { browser, reason } = await launchChromium();
    if (!browser) return t.skip(reason);
    t.after(() => browser.close());
    const page = await browser.newPage();
    await page.goto(server.url);
    assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true);
    assert.equal(await page.evaluate(() => typeof SharedArrayBuffer), 'function');
  });
});

describe('the app folder', () => {
  test('a source checkout without a build: run npm run build:web', (t) => {
    const root = tempDir(t, 'osdface-pkg-');
    fs.mkdirSync(path.join(root, 'web'));
    fs.writeFileSync(path.join(root, 'web', 'index.html'), '<!doctype html>');
    assert.throws(() => resolveAppDir({ root, env: {} }), (e: unknown) => {
      assert.ok(e instanceof AppDirError);
      assert.equal(e.dir, path.join(root, 'web', 'dist'));
      assert.match(e.message, /npm run build:web/);
      return true;
    });
    fs.mkdirSync(path.join(root, 'web', 'dist'));
    fs.writeFileSync(path.join(root, 'web', 'dist', 'index.html'), '<!doctype html>');
    assert.equal(resolveAppDir({ root, env: {} }), path.join(root, 'web', 'dist'));
  });

  test('an installed package without the built app: reinstall', (t) => {
    const root = tempDir(t, 'osdface-pkg-');
    assert.throws(() => resolveAppDir({ root, env: {} }), /built web app is missing from this installation; reinstall osdface/);
  });

  test(`--app-dir and ${APP_DIR_ENV} must name a folder with an index.html`, (t) => {
    const dir = tempDir(t, 'osdface-app-');
    assert.throws(() => resolveAppDir({ given: path.join(dir, 'nope'), env: {} }), /\(from --app-dir\) does not exist/);
    assert.throws(() => resolveAppDir({ env: { [APP_DIR_ENV]: dir } }), new RegExp(`\\(from ${APP_DIR_ENV}\\) has no index.html`));
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html>');
    assert.equal(resolveAppDir({ env: { [APP_DIR_ENV]: dir } }), dir);
  });
});

describe('osdface web (the command)', () => {
  test('prints the URL, serves, and stops cleanly on Ctrl-C (SIGINT) with exit 0', async (t) => {
    const tmp = tempDir(t, 'osdface-web-cli-');
    const app = makeApp(tmp);
    const child = spawn(process.execPath, [cli, 'web', '--port', '0', '--app-dir', app], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const m = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stdout);
        if (m) resolve(m[1]!);
      });
      child.on('exit', () => reject(new Error(`exited before printing its URL: ${stderr}`)));
    });
    const port = Number(new URL(url).port);
    const page = await raw(port, '/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['cross-origin-embedder-policy'], 'require-corp');
    // the packaged model, as the page will ask for it
    const manifest = await raw(port, `${MODEL_URL_PREFIX}manifest.json`);
    assert.equal(manifest.status, 200);
    assert.equal(JSON.parse(manifest.body).architecture, 'osdface-small');
    child.kill('SIGINT');
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /stopping/);
  });

  test('a port in use: exit 1 and what to do', async (t) => {
    const tmp = tempDir(t, 'osdface-web-cli-');
    const app = makeApp(tmp);
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    t.after(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    // asynchronous: the blocker must keep answering while the command runs
    const child = spawn(process.execPath, [cli, 'web', '--port', String(port), '--app-dir', app], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`osdface web: port ${port} on 127\\.0\\.0\\.1 is already in use; give another with --port`));
  });

  test('a missing app folder: exit 2 naming it; usage errors: exit 2', (t) => {
    const dir = tempDir(t, 'osdface-web-cli-');
    const missing = spawnSync(process.execPath, [cli, 'web', '--port', '0', '--app-dir', path.join(dir, 'dist')], { encoding: 'utf8' });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, new RegExp(`osdface web: ${path.join(dir, 'dist').replaceAll('/', '\\/')}: the web app folder \\(from --app-dir\\) does not exist`));
    for (const args of [['--port', '70000'], ['--bogus'], ['extra'], ['--port', 'x']]) {
      const r = spawnSync(process.execPath, [cli, 'web', ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, args.join(' '));
      assert.match(r.stderr, /Run 'osdface web --help'/);
    }
    const help = spawnSync(process.execPath, [cli, 'web', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Cross-origin|COOP same-origin, COEP require-corp/);
    const main = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' });
    assert.match(main.stdout, /osdface web \[--port/);
  });
});
