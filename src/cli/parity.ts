#!/usr/bin/env node
/** `npm run parity -- <fixture-dir> [--json]`: compare every stage with the reference outputs. */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runParity, type ParityReport } from '../pipeline/parity.js';
import { ArgumentError, parseFlags, reportUsageError } from './args.js';

function formatTable(r: ParityReport): string {
  const lines = [`parity: ${r.fixture}`, ''];
  const header = ['tensor', 'shape', 'max abs err', 'max |ref|', 'tolerance', 'result'];
  const body = r.rows.map((row) => [
    row.name, `[${row.shape.join(',')}]`, row.maxAbsError.toExponential(2), row.maxAbsRef.toExponential(2),
    row.tolerance === 0 ? 'exact' : row.tolerance.toExponential(2), (row.pass ? 'pass' : 'FAIL') + (row.note ? ` (${row.note})` : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  lines.push(fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...body.map(fmt), '');
  if (r.notChecked.length) lines.push(`not checked (no stage produces them): ${r.notChecked.join(', ')}`);
  const failed = r.rows.filter((x) => !x.pass).length;
  lines.push(`${r.rows.length - failed} passed, ${failed} failed`);
  return lines.join('\n');
}

export const PARITY_USAGE = `usage: osdface parity <fixture dir> [--json] [--skip-grad]
       (or: npm run parity -- <fixture dir> [--json] [--skip-grad])

Recomputes every stage the fixture holds a reference for and compares: max abs error, max |ref|
and pass/fail per tensor. <fixture dir> holds sd/, osdface/ and io.safetensors (and optionally
grad.safetensors with reference gradients, checked unless --skip-grad).

options:
  --json                 print the report as JSON
  --skip-grad            do not check the gradients in grad.safetensors
  -h, --help             this help

exit codes: 0 every tensor passed, 1 some tensor failed, 2 usage error or unreadable fixture.
`;

/** The parity command on `argv` (arguments after the command name); resolves to the exit code. */
export async function parityMain(argv: string[]): Promise<number> {
  let dir: string;
  let json: boolean;
  let skipGrad: boolean;
  try {
    const { flags, positionals } = parseFlags(argv, { json: { kind: 'bool' }, 'skip-grad': { kind: 'bool' }, help: { kind: 'bool', short: 'h' } });
    if (flags.has('help')) {
      process.stdout.write(PARITY_USAGE);
      return 0;
    }
    if (positionals.length === 0) throw new ArgumentError('no fixture directory given');
    if (positionals.length > 1) throw new ArgumentError(`one fixture directory, got ${positionals.length}: ${positionals.join(' ')}`);
    dir = positionals[0]!;
    json = flags.has('json');
    skipGrad = flags.has('skip-grad');
  } catch (e) {
    if (e instanceof ArgumentError) return reportUsageError('parity', e.message);
    throw e;
  }
  const report = await runParity(dir, {}, { gradients: !skipGrad });
  process.stdout.write((json ? JSON.stringify(report, null, 2) : formatTable(report)) + '\n');
  return report.pass ? 0 : 1;
}

/** parityMain, with a failure to read the fixture reported as `osdface parity: <message>` and exit code 2. */
export async function runParityCommand(argv: string[]): Promise<number> {
  try {
    return await parityMain(argv);
  } catch (e) {
    process.stderr.write(`osdface parity: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
}

// Run only when executed directly (npm run parity), not when imported by the osdface CLI.
function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  runParityCommand(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
