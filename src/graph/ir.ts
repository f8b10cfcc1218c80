/**
 * The graph IR: values with static shapes, nodes in topological order, parameters named by their
 * checkpoint keys. Shapes are checked while the graph is built, so a wrong config fails with the
 * module path (e.g. `up_blocks.2.attentions.1.proj_in`) instead of deep inside ONNX Runtime.
 *
 * Nodes are kept as plain records (op, inputs, outputs, attrs) so that reverse-mode
 * differentiation can later walk `graph.nodes` backwards and append gradient nodes.
 */
import type { AttrValue } from './onnx.js';
import { type DType, type Tensor, shapeStr } from '../tensor.js';

export class ShapeError extends Error {
  constructor(readonly modulePath: string, detail: string) {
    super(`${modulePath || '<graph>'}: ${detail}`);
    this.name = 'ShapeError';
  }
}

export class Value {
  /** For int64 shape-like vectors (outputs of Shape, Concat of those...): the values, when known. */
  known?: number[];

  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: number[],
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `${this.name}${shapeStr(this.shape)}`;
  }
}

export interface Node {
  op: string;
  domain: string;
  name: string;
  scope: string;
  inputs: (Value | null)[];
  outputs: Value[];
  attrs: Record<string, AttrValue>;
}

export interface GraphInput {
  value: Value;
  /** Per dimension: a name makes that dimension variable in the emitted ONNX graph. */
  dims: (number | string)[];
}

export interface LoraConfig {
  rank: number;
  /** alpha / rank. */
  scale: number;
  /** Module paths (e.g. `down_blocks.0.attentions.0.proj_in`) that get an adapter. */
  targets: Set<string>;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: GraphInput[] = [];
  readonly outputs: Value[] = [];
  /** Checkpoint key -> value; insertion order is the order parameters were first used. */
  readonly params = new Map<string, Value>();
  readonly constants = new Map<Value, Tensor>();
  private readonly scopes: string[] = [];
  private readonly names = new Set<string>();
  private counter = 0;
  /** Attention as ONNX Runtime's fused contrib op (true) or standard ONNX ops (false). */
  fusedAttention = true;
  /** Low-rank adapters applied to module weights as W + scale * B @ A, keyed by module path. */
  lora?: LoraConfig;

  constructor(readonly name: string) {}

  get scopePath(): string {
    return this.scopes.filter((s) => s.length > 0).join('.');
  }

  /** Runs `fn` with `path` (a module path relative to the current scope) pushed on the scope stack. */
  scope<T>(path: string, fn: () => T): T {
    this.scopes.push(path);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** Runs `fn` with an absolute module path, whatever the current scope. */
  atPath<T>(path: string, fn: () => T): T {
    const saved = this.scopes.splice(0, this.scopes.length);
    this.scopes.push(path);
    try {
      return fn();
    } finally {
      this.scopes.splice(0, this.scopes.length, ...saved);
    }
  }

  fail(detail: string): never {
    throw new ShapeError(this.scopePath, detail);
  }

  private uniqueName(base: string): string {
    let name = base.replace(/[^A-Za-z0-9_.:/-]/g, '_');
    if (this.names.has(name)) name = `${name}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  newValue(dtype: DType, shape: number[], hint: string): Value {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) this.fail(`invalid dimension ${d} in shape ${shapeStr(shape)} (${hint})`);
    }
    const prefix = this.scopePath ? `${this.scopePath}/` : '';
    return new Value(this, this.uniqueName(`${prefix}${hint}`), dtype, shape);
  }

  input(name: string, dtype: DType, dims: (number | string)[], exampleShape?: number[]): Value {
    const shape = exampleShape ?? dims.map((d) => (typeof d === 'number' ? d : this.fail(`input ${name}: dimension '${d}' needs an example size`)));
    if (shape.length !== dims.length) this.fail(`input ${name}: example shape ${shapeStr(shape)} does not match dims`);
    if (this.names.has(name)) this.fail(`duplicate graph input name '${name}'`);
    this.names.add(name);
    const v = new Value(this, name, dtype, shape);
    this.inputs.push({ value: v, dims });
    return v;
  }

  /** Marks `v` as a graph output called `name` (an Identity node gives it that name). */
  output(v: Value, name: string): void {
    if (this.names.has(name)) this.fail(`duplicate output name '${name}'`);
    this.names.add(name);
    const out = new Value(this, name, v.dtype, v.shape);
    out.known = v.known;
    this.nodes.push({ op: 'Identity', domain: '', name: `output:${name}`, scope: this.scopePath, inputs: [v], outputs: [out], attrs: {} });
    this.outputs.push(out);
  }

  /** A parameter by checkpoint key (float32 unless quantized); the same key always gives the same value. */
  param(key: string, shape: number[], dtype: DType = 'float32'): Value {
    const existing = this.params.get(key);
    if (existing) {
      if (shapeStr(existing.shape) !== shapeStr(shape)) {
        this.fail(`parameter '${key}' used with shape ${shapeStr(shape)} but declared ${shapeStr(existing.shape)}`);
      }
      return existing;
    }
    if (this.names.has(key)) this.fail(`parameter name '${key}' collides with another value`);
    this.names.add(key);
    const v = new Value(this, key, dtype, [...shape]);
    this.params.set(key, v);
    return v;
  }

  constant(t: Tensor, hint = 'const'): Value {
    const v = this.newValue(t.dtype, t.shape, hint);
    this.constants.set(v, t);
    if (t.dtype === 'int64' && t.shape.length <= 1) v.known = Array.from(t.data as BigInt64Array, Number);
    return v;
  }

  addNode(
    op: string,
    inputs: (Value | null)[],
    outputs: { dtype: DType; shape: number[] }[],
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): Value[] {
    for (const i of inputs) {
      if (i && i.graph !== this) this.fail(`${op}: input ${i.name} belongs to another graph`);
    }
    const outs = outputs.map((o) => this.newValue(o.dtype, o.shape, op));
    this.nodes.push({ op, domain, name: outs[0]?.name ?? op, scope: this.scopePath, inputs, outputs: outs, attrs });
    return outs;
  }
}
