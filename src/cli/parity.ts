#!/usr/bin/env node
/** `npm run parity -- <fixture-dir> [--json]`: compare every stage with the reference outputs. */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runParity, type ParityReport } from '../pipeline/parity.js';

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

/**
 * The parity command on `argv` (arguments after the command name); resolves to the exit code.
 * `usage` is how the command is invoked, for the usage message.
 */
export async function parityMain(argv: string[], usage = 'npm run parity --'): Promise<number> {
  const json = argv.includes('--json');
  const dirs = argv.filter((a) => !a.startsWith('--'));
  const unknown = argv.filter((a) => a.startsWith('--') && !['--json', '--skip-grad', '--help'].includes(a));
  if (dirs.length !== 1 || argv.includes('--help') || unknown.length > 0) {
    process.stderr.write(`${unknown.length ? `unknown option ${unknown[0]}\n` : ''}usage: ${usage} <fixture-dir> [--json] [--skip-grad]\n` +
      '  <fixture-dir> holds sd/, osdface/ and io.safetensors (and optionally grad.safetensors, checked unless --skip-grad)\n');
    return 2;
  }
  const report = await runParity(dirs[0]!, {}, { gradients: !argv.includes('--skip-grad') });
  process.stdout.write((json ? JSON.stringify(report, null, 2) : formatTable(report)) + '\n');
  return report.pass ? 0 : 1;
}

/** parityMain, with a failure to read the fixture reported as `parity: <message>` and exit code 2. */
export async function runParityCommand(argv: string[], usage?: string): Promise<number> {
  try {
    return await parityMain(argv, usage);
  } catch (e) {
    process.stderr.write(`parity: ${e instanceof Error ? e.message : String(e)}\n`);
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
