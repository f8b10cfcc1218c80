/**
 * A small PatchGAN discriminator for GAN guidance: strided 4x4 convolutions with LeakyReLU(0.2) and
 * group normalization, ending in a map of real/fake logits (one per patch). With `input: 'detail'`
 * it judges the image minus its 5x5 Gaussian blur: texture and edges, never colour or shading, which
 * a generator can shift at no cost in texture to fool a critic that sees them (measured: a magenta cast).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';

export type CriticInput = 'image' | 'detail';

/** Per-channel 5x5 binomial blur ([1 4 6 4 1]/16 in each direction), zero beyond the edges (real and restored alike). */
function gaussianBlur5(g: Graph, x: Value): Value {
  const channels = x.shape[1]!;
  const taps = [1, 4, 6, 4, 1].map((v) => v / 16);
  const kernel = new Float32Array(channels * 25);
  for (let c = 0; c < channels; c++) for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) kernel[c * 25 + i * 5 + j] = taps[i]! * taps[j]!;
  return op.conv(x, op.floatConst(g, [channels, 1, 5, 5], kernel, 'critic_blur'), null, { groups: channels, pads: [2, 2, 2, 2] });
}

export class PatchDiscriminator extends Module {
  readonly convs: ModuleList<Conv2d>;
  readonly norms: ModuleList<GroupNorm>;
  readonly conv_out: Conv2d;

  constructor(inChannels = 3, width = 32, layers = 2, readonly input: CriticInput = 'image') {
    super();
    const widths = Array.from({ length: layers + 1 }, (_, i) => (i === 0 ? inChannels : width * 2 ** (i - 1)));
    this.convs = this.addModule('convs', new ModuleList(widths.slice(1).map((w, i) => new Conv2d(widths[i]!, w, 4, { stride: 2, padding: 1 }))));
    this.norms = this.addModule('norms', new ModuleList(widths.slice(2).map((w) => new GroupNorm(Math.min(8, w), w, 1e-5))));
    this.conv_out = this.addModule('conv_out', new Conv2d(widths[layers]!, 1, 3, { padding: 1 }));
  }

  /** image in [-1, 1] -> patch logits (B, 1, h, w). */
  forward(g: Graph, x: Value): Value {
    let h = this.input === 'detail' ? op.sub(x, gaussianBlur5(g, x)) : x;
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

  constructor(size: { width: number; layers: number; input?: CriticInput } = { width: 32, layers: 2 }) {
    super();
    this.discriminator = this.addModule('discriminator', new PatchDiscriminator(3, size.width, size.layers, size.input ?? 'image'));
  }
}
