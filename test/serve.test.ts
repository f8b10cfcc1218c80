/**
 * `osdface serve` in this process (startServer, one worker, tiny parity-a model): the routes, the
 * OpenAPI document against the routes, the answers (image, JSON, multipart, alpha), outputs
 * byte-identical to `osdface restore`, every bad input with its 4xx and JSON error, no temporary
 * files and memory back at its baseline afterwards, and structured logs without image bytes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import sharp from 'sharp';
import { startServer, type RunningServer } from '../src/server/server.js';
import { OPTIONS_SCHEMA, OPTION_NAMES } from '../src/server/options.js';
import { convertParityA, noFixtures, repoRoot } from './helpers.js';
import { get, makeInputs, metric, restore, type Inputs } from './serve-helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const skip = noFixtures;
let work: string;
let modelDir: string;
let tmp: string;
let oldTmp: string | undefined;
/** The temporary folder before the test points TMPDIR at its own. */
let outerTmp: string;
let server: RunningServer;
let base: string;
let inputs: Inputs;
const logs: string[] = [];

const MAX_BODY = 1024 * 1024;

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-serve-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  inputs = await makeInputs();
  // Everything the server (and its workers) might write to a temporary folder goes here.
  tmp = path.join(work, 'tmp');
  fs.mkdirSync(tmp);
  oldTmp = process.env.TMPDIR;
  outerTmp = os.tmpdir();
  process.env.TMPDIR = tmp;
  const logStream = new Writable({ write(chunk, _enc, done) { logs.push(...String(chunk).split('\n').filter(Boolean)); done(); } });
  server = await startServer({ modelDir, port: 0, workers: 1, threadsPerWorker: 1, queue: 4, maxBodyBytes: MAX_BODY, maxPixels: 4e6, logStream });
  base = server.url;
});

after(async () => {
  if (skip) return;
  await server?.close();
  if (oldTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = oldTmp;
  fs.rmSync(work, { recursive: true, force: true });
});

test('healthz, readyz and metrics answer; listening on 127.0.0.1', { skip }, async () => {
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  const h = await get(base, '/healthz');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json(), { status: 'ok' });
  const r = await get(base, '/readyz');
  assert.equal(r.status, 200);
  assert.equal(r.json().status, 'ready');
  assert.equal(r.json().workers, 1);
  const m = await get(base, '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type')!, /^text\/plain/);
  const text = m.body.toString();
  for (const name of ['osdface_http_requests_total', 'osdface_http_request_duration_seconds', 'osdface_queue_depth', 'osdface_workers_busy', 'osdface_faces_restored_total', 'osdface_worker_restarts_total', 'osdface_process_resident_memory_bytes']) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `metric ${name}`);
  }
  assert.equal(metric(text, 'osdface_http_requests_total', 'route="/healthz",status="200"'), 1);
  assert.equal(metric(text, 'osdface_workers'), 1);
});

test('the OpenAPI document lists exactly the routes the server has, with the options it accepts', { skip }, async () => {
  const doc = (await get(base, '/openapi.json')).json() as unknown as { openapi: string; paths: Record<string, Record<string, { parameters?: { name: string; in: string; schema: { enum?: unknown[] } }[]; requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> }>> };
  assert.match(doc.openapi, /^3\./);
  const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  assert.deepEqual(documented, ['GET /healthz', 'GET /metrics', 'GET /openapi.json', 'GET /readyz', 'POST /v1/restore']);
  for (const d of documented) {
    const [method, url] = d.split(' ') as ['GET' | 'POST', string];
    assert.ok(server.app.hasRoute({ method, url }), `the server has ${d}`);
  }
  // and nothing else answers
  assert.equal((await get(base, '/v1/restore')).status, 404);
  assert.equal((await get(base, '/v2/restore')).json().error.code, 'not_found');

  const op = doc.paths['/v1/restore']!.post!;
  const params = op.parameters!.filter((p) => p.in === 'query');
  assert.deepEqual(params.map((p) => p.name).sort(), [...OPTION_NAMES].sort());
  for (const p of params) {
    const schema = (OPTIONS_SCHEMA.properties as Record<string, { enum?: readonly unknown[] }>)[p.name]!;
    if (schema.enum) assert.deepEqual(p.schema.enum, [...schema.enum], p.name);
  }
  assert.deepEqual(Object.keys(op.requestBody!.content).sort(), ['image/*', 'multipart/form-data']);
  for (const code of ['200', '400', '413', '415', '422', '500', '503', '504']) assert.ok(code in op.responses, `documents ${code}`);
  // every documented option is accepted, and an undocumented one is refused
  const ok = await restore(base, inputs.face, { mode: 'aligned', format: 'webp', latent: 'sample', seed: 3 });
  assert.equal(ok.status, 200);
  const bad = await restore(base, inputs.face, { mode: 'aligned', size: 64 });
  assert.equal(bad.status, 400);
});

test('POST /v1/restore: image body -> image; Accept: application/json -> the same image in base64 with the faces; multipart -> the same', { skip }, async () => {
  const raw = await restore(base, inputs.face, { mode: 'aligned' });
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get('content-type'), 'image/png');
  assert.equal(raw.headers.get('x-faces-restored'), '1');
  assert.equal(raw.headers.get('x-notices'), '[]');
  assert.match(raw.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/);
  const meta = await sharp(raw.body).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 128]);

  const json = await restore(base, inputs.face, { mode: 'aligned' }, { accept: 'application/json' });
  assert.equal(json.status, 200);
  const j = json.json();
  assert.equal(j.format, 'png');
  assert.equal(j.faces_restored, 1);
  assert.deepEqual(j.faces, []);
  assert.ok(Buffer.from(j.image as string, 'base64').equals(raw.body), 'the base64 image is the image answer');

  const form = new FormData();
  form.append('mode', 'aligned');
  form.append('image', new Blob([new Uint8Array(inputs.face)], { type: 'image/png' }), 'face.png');
  const mp = await restore(base, form);
  assert.equal(mp.status, 200);
  assert.ok(mp.body.equals(raw.body), 'multipart gives the same bytes');

  // the request id a client sends is kept
  const mine = await restore(base, inputs.face, { mode: 'aligned' }, { 'x-request-id': 'client-chosen-id-1' });
  assert.equal(mine.headers.get('x-request-id'), 'client-chosen-id-1');
});

test('POST /v1/restore: a photo gives the face count, the notices and (JSON) each face with box, score, landmarks and status', { skip }, async () => {
  const r = await restore(base, inputs.group, {}, { 'content-type': 'image/jpeg', accept: 'application/json' });
  assert.equal(r.status, 200);
  // RetinaFace (the default detector) finds the 4 faces of this photo.
  assert.equal(r.headers.get('x-faces-detected'), '4');
  const j = r.json() as unknown as { faces: { box: { x: number }; score: number; landmarks: number[][]; status: string }[]; notices: string[]; faces_restored: number; width: number };
  assert.equal(j.faces.length, 4);
  for (const f of j.faces) {
    assert.equal(typeof f.box.x, 'number');
    assert.ok(f.score > 0 && f.score <= 1);
    assert.equal(f.landmarks.length, 5);
    assert.ok(['restored', 'too-small', 'not-center', 'over-max-faces'].includes(f.status));
  }
  assert.equal(j.faces_restored, j.faces.filter((f) => f.status === 'restored').length);
  assert.deepEqual(JSON.parse(r.headers.get('x-notices')!), j.notices);
  const limited = await restore(base, inputs.group, { max_faces: 2 }, { 'content-type': 'image/jpeg', accept: 'application/json' });
  const jl = limited.json() as unknown as { faces: { status: string }[]; notices: string[] };
  assert.equal(jl.faces.filter((f) => f.status === 'over-max-faces').length, 2);
  assert.ok(jl.notices.some((n) => /2 faces over the limit of 2 .*left as they are/.test(n)), 'the faces left out are reported');

  const up = await restore(base, inputs.group, { upscale: 2, format: 'jpg', max_faces: 1 }, { 'content-type': 'image/jpeg' });
  assert.equal(up.status, 200);
  assert.equal(up.headers.get('content-type'), 'image/jpeg');
  const [m0, m1] = [await sharp(inputs.group).metadata(), await sharp(up.body).metadata()];
  assert.deepEqual([m1.width, m1.height], [m0.width! * 2, m0.height! * 2]);

  // alpha is kept on png, dropped on jpg
  const a = await restore(base, inputs.faceAlpha, { mode: 'aligned' });
  assert.equal((await sharp(a.body).metadata()).channels, 4);
  const aj = await restore(base, inputs.faceAlpha, { mode: 'aligned', format: 'jpg' });
  assert.equal((await sharp(aj.body).metadata()).channels, 3);
});

test('outputs are byte-identical to `osdface restore` for the same input, options and seed', { skip }, async () => {
  const inDir = path.join(work, 'cli-in');
  fs.mkdirSync(inDir);
  fs.writeFileSync(path.join(inDir, 'face.png'), inputs.faceAlpha);
  fs.writeFileSync(path.join(inDir, 'group.jpg'), inputs.group);
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'restore', ...args, '--model', modelDir, '--threads', '1'], { encoding: 'utf8', env: { ...process.env, TMPDIR: outerTmp } });
    assert.equal(r.status, 0, r.stderr);
  };
  const outA = path.join(work, 'cli-aligned');
  cli([path.join(inDir, 'face.png'), '-o', outA, '--aligned', '--latent', 'sample', '--seed', '11', '--format', 'webp']);
  const a = await restore(base, inputs.faceAlpha, { mode: 'aligned', latent: 'sample', seed: 11, format: 'webp' });
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('x-seed'), '11');
  assert.ok(a.body.equals(fs.readFileSync(path.join(outA, 'face.webp'))), 'aligned crop: same bytes as osdface restore --aligned');

  const outP = path.join(work, 'cli-photo');
  cli([path.join(inDir, 'group.jpg'), '-o', outP, '--upscale', '2', '--latent', 'sample', '--seed', '5']);
  const p = await restore(base, inputs.group, { upscale: 2, latent: 'sample', seed: 5 }, { 'content-type': 'image/jpeg' });
  assert.equal(p.status, 200);
  assert.ok(p.body.equals(fs.readFileSync(path.join(outP, 'group.png'))), 'photo: same bytes as osdface restore');
});

/** Every bad input: [what, request, status, code, message pattern]. */
function badCases(): [string, () => Promise<import('./serve-helpers.js').Answer>, number, string, RegExp][] {
  const form = (parts: [string, string | Blob][]) => {
    const f = new FormData();
    for (const [k, v] of parts) f.append(k, v as string);
    return f;
  };
  const png = (b: Buffer) => new Blob([new Uint8Array(b)], { type: 'image/png' });
  return [
    ['no body', () => fetch(`${base}/v1/restore`, { method: 'POST' }).then(wrap), 400, 'missing_body', /no image/],
    ['empty body', () => restore(base, Buffer.alloc(0)), 400, 'missing_body', /no image/],
    ['not an image', () => restore(base, Buffer.from('this is not an image, just text '.repeat(20))), 422, 'invalid_image', /not an image .*unsupported or unrecognised image format/],
    ['an SVG (rendered formats are refused)', () => restore(base, Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><image href="file:///etc/hostname" width="64" height="64"/></svg>'), {}, { 'content-type': 'image/svg+xml' }), 422, 'invalid_image', /images in the svg format are not accepted; send jpeg, png, webp/],
    ['truncated image', () => restore(base, inputs.truncated, { mode: 'aligned' }), 422, 'invalid_image', /cannot be decoded \(truncated or corrupt\?\)/],
    ['image bomb', () => restore(base, inputs.bomb), 413, 'image_too_large', /50000x50000 = 2500\.0 megapixels, over the limit of 4\.0 \(--max-pixels\)/],
    ['body over --max-body', () => restore(base, Buffer.alloc(2 * MAX_BODY, 1)), 413, 'body_too_large', /--max-body/],
    ['multipart file over --max-body', () => restore(base, form([['image', png(Buffer.alloc(2 * MAX_BODY, 1))]])), 413, 'body_too_large', /--max-body/],
    ['unknown option', () => restore(base, inputs.face, { strength: 2 }), 400, 'invalid_option', /unknown option 'strength' in the query string; the options are mode, upscale/],
    ['ill-typed upscale', () => restore(base, inputs.face, { upscale: 3 }), 400, 'invalid_option', /option 'upscale' must be one of 1, 2, 4/],
    ['ill-typed max_faces', () => restore(base, inputs.face, { max_faces: 'many' }), 400, 'invalid_option', /option 'max_faces' must be an integer from 1/],
    ['negative seed', () => restore(base, inputs.face, { latent: 'sample', seed: -1 }), 400, 'invalid_option', /option 'seed' must be an integer from 0 to 4294967295/],
    ['ill-typed boolean', () => restore(base, inputs.face, { only_center_face: 'maybe' }), 400, 'invalid_option', /option 'only_center_face' must be true or false/],
    ['unknown mode', () => restore(base, inputs.face, { mode: 'crop' }), 400, 'invalid_option', /option 'mode' must be one of photo, aligned/],
    ['seed without latent=sample', () => restore(base, inputs.face, { seed: 4 }), 400, 'invalid_option', /'seed' only applies with latent=sample/],
    ['photo option on an aligned crop', () => restore(base, inputs.face, { mode: 'aligned', upscale: 2 }), 400, 'invalid_option', /'upscale' applies to whole photos/],
    ['unknown multipart field', () => restore(base, form([['image', png(inputs.face)], ['scale', '2']])), 400, 'invalid_option', /unknown option 'scale' in the multipart fields/],
    ['ill-typed multipart field', () => restore(base, form([['image', png(inputs.face)], ['upscale', 'x']])), 400, 'invalid_option', /option 'upscale' must be one of 1, 2, 4 \(in the multipart fields\)/],
    ['option in query and field', () => restore(base, form([['image', png(inputs.face)], ['mode', 'aligned']]), { mode: 'aligned' }), 400, 'invalid_option', /given both in the query string and as a multipart field/],
    ['multipart without image', () => restore(base, form([['mode', 'aligned']])), 400, 'missing_body', /no file field 'image'/],
    ['multipart, other file field', () => restore(base, form([['file', png(inputs.face)]])), 400, 'invalid_option', /unexpected file field 'file'/],
    ['JSON body', () => restore(base, Buffer.from('{"image":"x"}'), {}, { 'content-type': 'application/json' }), 415, 'unsupported_media_type', /Content-Type image\/\*/],
    ['text body', () => restore(base, Buffer.from('hello'), {}, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type', /multipart\/form-data/],
  ];
}

async function wrap(res: Response) {
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) };
}

test('bad input: a clear 4xx with a JSON error naming what was wrong, no temporary files, memory back at its baseline', { skip }, async (t) => {
  // What is in the temporary folder before (process start-up may leave files there; the requests must add none).
  const tmpBefore = fs.readdirSync(tmp).sort();
  const cases = badCases();
  const runAll = async (check: boolean) => {
    for (const [what, send, status, code, message] of cases) {
      const r = await send();
      if (!check) continue;
      assert.equal(r.status, status, `${what}: ${r.body.toString().slice(0, 300)}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/, what);
      const e = r.json().error;
      assert.equal(e.code, code, what);
      assert.match(e.message, message, what);
    }
  };
  await runAll(true);
  // The service still works after all of that.
  assert.equal((await restore(base, inputs.face, { mode: 'aligned' })).status, 200);

  // Memory: heap + array buffers after a full GC, before and after 10 more rounds of every bad input.
  const used = () => {
    for (let i = 0; i < 3; i++) gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  await runAll(false);
  const before = used();
  for (let i = 0; i < 10; i++) await runAll(false);
  const afterBytes = used();
  t.diagnostic(`heap + array buffers: ${(before / 1e6).toFixed(1)} MB before, ${(afterBytes / 1e6).toFixed(1)} MB after ${10 * cases.length} bad requests (${((afterBytes - before) / 1e6).toFixed(2)} MB); rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
  assert.ok(afterBytes - before < 8e6, `memory grew by ${((afterBytes - before) / 1e6).toFixed(1)} MB over ${10 * cases.length} bad requests`);
  assert.deepEqual(fs.readdirSync(tmp).sort(), tmpBefore, 'no temporary files left');
  const text = (await get(base, '/metrics')).body.toString();
  assert.ok(metric(text, 'osdface_http_requests_total', 'route="/v1/restore",status="413"') >= 33);
});

test('logs: JSON lines with the request id, never the image bytes', { skip }, async () => {
  assert.ok(logs.length > 20);
  const lines = logs.map((l) => JSON.parse(l) as { reqId?: string; msg: string });
  const restored = lines.filter((l) => l.msg === 'restored');
  assert.ok(restored.length > 5);
  for (const l of restored) assert.ok(l.reqId, 'a restore log line has the request id');
  assert.ok(lines.some((l) => l.reqId === 'client-chosen-id-1'));
  const face64 = inputs.face.subarray(100, 160).toString('base64');
  for (const l of logs) {
    assert.ok(l.length < 4000, `a log line of ${l.length} characters: ${l.slice(0, 200)}`);
    assert.ok(!l.includes(face64) && !l.includes('iVBORw0KGgo'), 'no image bytes in the logs');
  }
});
