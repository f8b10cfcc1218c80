/**
 * The one flag parser of every `osdface` command (no dependencies): `--flag value`, `--flag=value`,
 * short aliases, boolean flags, `--` ends the flags. A problem throws ArgumentError with a message
 * for the user; each command adds its own usage text.
 */
export class ArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentError';
  }
}

export interface FlagSpec {
  kind: 'string' | 'int' | 'number' | 'bool';
  /** Allowed values of a string flag. */
  choices?: readonly string[];
  short?: string;
}

export type FlagValue = string | number | true;
export type Flags = Map<string, FlagValue>;

export function parseFlags(argv: readonly string[], spec: Record<string, FlagSpec>): { flags: Flags; positionals: string[] } {
  const flags: Flags = new Map();
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([name, s]) => [s.short!, name]));
  const fail = (msg: string): never => { throw new ArgumentError(msg); };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      if (!(name in spec)) fail(`unknown option --${name}`);
    } else {
      name = byShort.get(arg.slice(1)) ?? fail(`unknown option ${arg}`);
    }
    const s = spec[name]!;
    const shown = arg.startsWith('--') ? `--${name}` : arg;
    if (flags.has(name)) fail(`${shown} is given twice`);
    if (s.kind === 'bool') {
      if (inline !== undefined) fail(`${shown} takes no value`);
      flags.set(name, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      // A following flag is not a value, but a negative number is.
      if (next === undefined || (next.startsWith('-') && next !== '-' && !/^-\d/.test(next))) fail(`${shown} needs a value`);
      value = next!;
      i++;
    }
    if (s.kind === 'int') {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) fail(`${shown} must be a whole number >= 0, got '${value}'`);
      flags.set(name, Number(value));
    } else if (s.kind === 'number') {
      const v = Number(value);
      if (value.trim() === '' || !Number.isFinite(v)) fail(`${shown} must be a number, got '${value}'`);
      flags.set(name, v);
    } else {
      if (s.choices && !s.choices.includes(value)) fail(`${shown} must be one of ${s.choices.join(', ')}, got '${value}'`);
      flags.set(name, value);
    }
  }
  return { flags, positionals };
}

/**
 * Reports a usage error the same way for every command: `osdface <command>: <message>`, then a
 * line pointing to `osdface <command> --help` (not the whole help). Returns the exit code, 2.
 */
export function reportUsageError(command: string | null, message: string): 2 {
  const name = command ? `osdface ${command}` : 'osdface';
  process.stderr.write(`${name}: ${message}\nRun '${name} --help' for ${command ? 'its options' : 'the commands'}.\n`);
  return 2;
}
