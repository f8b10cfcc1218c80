/**
 * Modules in the PyTorch sense, reduced to what a graph builder needs: named parameters (checkpoint
 * key + shape, never data) and children. Registration order mirrors the PyTorch classes so that
 * `namedParameters()` lists keys in state_dict order.
 */
import type { Graph, Value } from '../graph/ir.js';

export abstract class Module {
  private parent?: Module;
  private localName = '';
  private readonly ownParams: [string, number[]][] = [];
  private readonly children: [string, Module][] = [];

  /** Dotted path from the root module, e.g. `down_blocks.0.resnets.1.conv1`. */
  get path(): string {
    if (!this.parent) return this.localName;
    const p = this.parent.path;
    return p ? `${p}.${this.localName}` : this.localName;
  }

  protected registerParam(name: string, shape: number[]): void {
    this.ownParams.push([name, shape]);
  }

  protected addModule<T extends Module>(name: string, m: T): T {
    if (m.parent) throw new Error(`module ${m.path} already has a parent`);
    m.parent = this;
    m.localName = name;
    this.children.push([name, m]);
    return m;
  }

  /** All parameters below this module as [checkpoint key, shape], in state_dict order. */
  namedParameters(): [string, number[]][] {
    const out: [string, number[]][] = [];
    const prefix = this.path ? `${this.path}.` : '';
    for (const [n, s] of this.ownParams) out.push([prefix + n, s]);
    for (const [, c] of this.children) out.push(...c.namedParameters());
    return out;
  }

  /** The graph value of one of this module's own parameters. */
  protected p(g: Graph, name: string): Value {
    const entry = this.ownParams.find(([n]) => n === name);
    if (!entry) throw new Error(`${this.path}: no parameter '${name}'`);
    return g.param(this.path ? `${this.path}.${name}` : name, entry[1]);
  }

  protected hasParam(name: string): boolean {
    return this.ownParams.some(([n]) => n === name);
  }

  /** Runs `fn` with this module's path as the error scope. */
  protected scoped<T>(g: Graph, fn: () => T): T {
    return g.atPath(this.path, fn);
  }
}

/** torch.nn.ModuleList: children named 0, 1, 2... */
export class ModuleList<T extends Module> extends Module {
  readonly items: T[] = [];

  constructor(items: T[] = []) {
    super();
    for (const m of items) this.push(m);
  }

  push(m: T): T {
    this.addModule(String(this.items.length), m);
    this.items.push(m);
    return m;
  }

  get length(): number {
    return this.items.length;
  }
}
