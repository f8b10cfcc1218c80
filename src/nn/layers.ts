/** The torch.nn layers our networks use, with torch's parameter names and shapes. */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module } from './module.js';
import { groupNorm } from './functional/group_norm.js';
import { adaptedWeight } from './lora.js';

export class Linear extends Module {
  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly bias = true) {
    super();
    this.registerParam('weight', [outFeatures, inFeatures]);
    if (bias) this.registerParam('bias', [outFeatures]);
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => {
      if (x.shape[x.rank - 1] !== this.inFeatures) {
        g.fail(`Linear expects ${this.inFeatures} input features, got input of shape [${x.shape.join(', ')}]`);
      }
      const y = op.matmul(x, op.transpose(adaptedWeight(g, this.path, this.p(g, 'weight')), [1, 0]));
      return this.bias ? op.add(y, this.p(g, 'bias')) : y;
    });
  }
}

export interface ConvConfig {
  stride?: number;
  padding?: number;
  bias?: boolean;
}

/** torch.nn.Conv1d / Conv2d with square kernels and symmetric padding. */
export class Conv extends Module {
  readonly stride: number;
  readonly padding: number;
  readonly bias: boolean;

  constructor(readonly dims: 1 | 2, readonly inChannels: number, readonly outChannels: number, readonly kernel: number, cfg: ConvConfig = {}) {
    super();
    this.stride = cfg.stride ?? 1;
    this.padding = cfg.padding ?? 0;
    this.bias = cfg.bias ?? true;
    this.registerParam('weight', [outChannels, inChannels, ...Array(dims).fill(kernel)]);
    if (this.bias) this.registerParam('bias', [outChannels]);
  }

  /** The (LoRA-adapted) weight and the bias as graph values, for code that convolves differently. */
  weightAndBias(g: Graph): { weight: Value; bias: Value | null } {
    return { weight: adaptedWeight(g, this.path, this.p(g, 'weight')), bias: this.bias ? this.p(g, 'bias') : null };
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => {
      if (x.rank !== this.dims + 2) g.fail(`Conv${this.dims}d expects a rank-${this.dims + 2} input, got [${x.shape.join(', ')}]`);
      return op.conv(x, adaptedWeight(g, this.path, this.p(g, 'weight')), this.bias ? this.p(g, 'bias') : null, {
        stride: Array(this.dims).fill(this.stride),
        pads: Array(2 * this.dims).fill(this.padding),
      });
    });
  }
}

export class Conv2d extends Conv {
  constructor(inChannels: number, outChannels: number, kernel: number, cfg: ConvConfig = {}) {
    super(2, inChannels, outChannels, kernel, cfg);
  }
}

export class Conv1d extends Conv {
  constructor(inChannels: number, outChannels: number, kernel: number, cfg: ConvConfig = {}) {
    super(1, inChannels, outChannels, kernel, cfg);
  }
}

export class GroupNorm extends Module {
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, readonly affine = true) {
    super();
    if (affine) {
      this.registerParam('weight', [numChannels]);
      this.registerParam('bias', [numChannels]);
    }
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => {
      if (x.shape[1] !== this.numChannels) g.fail(`GroupNorm expects ${this.numChannels} channels, got [${x.shape.join(', ')}]`);
      return groupNorm(x, this.numGroups, this.affine ? this.p(g, 'weight') : null, this.affine ? this.p(g, 'bias') : null, this.eps);
    });
  }
}

export class LayerNorm extends Module {
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.registerParam('weight', [dim]);
    this.registerParam('bias', [dim]);
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => op.layerNorm(x, this.p(g, 'weight'), this.p(g, 'bias'), this.eps));
  }
}
