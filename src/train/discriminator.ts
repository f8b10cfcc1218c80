/**
 * A small PatchGAN discriminator for GAN guidance: strided 4x4 convolutions with LeakyReLU(0.2) and
 * group normalization, ending in a map of real/fake logits (one per patch).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';

export class PatchDiscriminator extends Module {
  readonly convs: ModuleList<Conv2d>;
  readonly norms: ModuleList<GroupNorm>;
  readonly conv_out: Conv2d;

  constructor(inChannels = 3, width = 32, layers = 2) {
    super();
    const widths = Array.from({ length: layers + 1 }, (_, i) => (i === 0 ? inChannels : width * 2 ** (i - 1)));
    this.convs = this.addModule('convs', new ModuleList(widths.slice(1).map((w, i) => new Conv2d(widths[i]!, w, 4, { stride: 2, padding: 1 }))));
    this.norms = this.addModule('norms', new ModuleList(widths.slice(2).map((w) => new GroupNorm(Math.min(8, w), w, 1e-5))));
    this.conv_out = this.addModule('conv_out', new Conv2d(widths[layers]!, 1, 3, { padding: 1 }));
  }

  /** image in [-1, 1] -> patch logits (B, 1, h, w). */
  forward(g: Graph, x: Value): Value {
    let h = x;
    this.convs.items.forEach((c, i) => {
      h = c.forward(g, h);
      if (i > 0) h = this.norms.items[i - 1]!.forward(g, h);
      h = op.leakyRelu(h, 0.2);
    });
    return this.conv_out.forward(g, h);
  }
}

/** Roots the discriminator's parameters under `discriminator.` so they never collide with the generator's. */
export class GanCritic extends Module {
  readonly discriminator: PatchDiscriminator;

  constructor() {
    super();
    this.discriminator = this.addModule('discriminator', new PatchDiscriminator());
  }
}
