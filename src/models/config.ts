/**
 * Typed reads of a diffusers/OSDFace config.json. Missing keys take the library default, as
 * diffusers does; a value of the wrong type, or a feature this port does not implement, is an
 * error naming the config file and key.
 */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly key: string, detail: string) {
    super(`${source}: '${key}' ${detail}`);
    this.name = 'ConfigError';
  }
}

export class Config {
  constructor(readonly raw: Record<string, unknown>, readonly source: string) {}

  private get(key: string): unknown {
    const v = this.raw[key];
    return v === null ? undefined : v;
  }

  fail(key: string, detail: string): never {
    throw new ConfigError(this.source, key, detail);
  }

  number(key: string, fallback?: number): number {
    const v = this.get(key) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `must be a number, found ${JSON.stringify(this.raw[key])}`);
    return v;
  }

  int(key: string, fallback?: number): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v < 0) this.fail(key, `must be a non-negative integer, found ${v}`);
    return v;
  }

  bool(key: string, fallback?: boolean): boolean {
    const v = this.get(key) ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, found ${JSON.stringify(this.raw[key])}`);
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.get(key) ?? fallback;
    if (typeof v !== 'string') this.fail(key, `must be a string, found ${JSON.stringify(this.raw[key])}`);
    return v;
  }

  ints(key: string, fallback?: number[]): number[] {
    const v = this.get(key) ?? fallback;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0)) {
      this.fail(key, `must be a list of non-negative integers, found ${JSON.stringify(this.raw[key])}`);
    }
    return v as number[];
  }

  strings(key: string, fallback?: string[]): string[] {
    const v = this.get(key) ?? fallback;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) this.fail(key, `must be a list of strings, found ${JSON.stringify(this.raw[key])}`);
    return v as string[];
  }

  /** An int or a per-block list of ints (diffusers accepts both), expanded to `n` entries. */
  perBlock(key: string, n: number, fallback?: number | number[]): number[] {
    const v = this.get(key) ?? fallback;
    if (typeof v === 'number') return Array(n).fill(v);
    const list = this.ints(key, fallback as number[] | undefined);
    if (list.length !== n) this.fail(key, `has ${list.length} entries, expected one per block (${n})`);
    return list;
  }

  isSet(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Rejects a config that asks for something this port does not implement. */
  requireDefault(key: string, allowed: unknown[]): void {
    const v = this.get(key);
    if (v !== undefined && !allowed.some((a) => JSON.stringify(a) === JSON.stringify(v))) {
      this.fail(key, `= ${JSON.stringify(v)} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
    }
  }
}
