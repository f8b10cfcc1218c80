/**
 * GAN critics. A small PatchGAN discriminator: strided 4x4 convolutions with LeakyReLU(0.2) and
 * group normalization, ending in a map of real/fake logits (one per patch). With `input: 'detail'`
 * it judges the image minus its 5x5 Gaussian blur: texture and edges, never colour or shading, which
 * a generator can shift at no cost in texture to fool a critic that sees them (measured: a magenta cast).
 *
 * With `input: 'encoder'`, a projected critic (Sauer et al., "Projected GANs Converge Faster", 2021):
 * small trainable heads on the feature pyramid of a frozen pretrained encoder (TAEF2's copy that
 * `encoderDists` uses). Pixel critics trained from scratch on 210 faces told real from restored
 * within 40 steps and pushed stripes and hatching into the faces (recipe stages 10 and 11); features
 * learned from a far larger corpus give the critic less to memorise.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';
import type { CriticInput } from './config.js';
import { floatTensor, type FloatTensor } from '../tensor.js';

/** Per-channel 5x5 binomial blur ([1 4 6 4 1]/16 in each direction), zero beyond the edges (real and restored alike). */
export function gaussianBlur5(g: Graph, x: Value): Value {
  const channels = x.shape[1]!;
  const taps = [1, 4, 6, 4, 1].map((v) => v / 16);
  const kernel = new Float32Array(channels * 25);
  for (let c = 0; c < channels; c++) for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) kernel[c * 25 + i * 5 + j] = taps[i]! * taps[j]!;
  return op.conv(x, op.floatConst(g, [channels, 1, 5, 5], kernel, 'critic_blur'), null, { groups: channels, pads: [2, 2, 2, 2] });
}

/** The shape of `shiftKernel`'s depthwise kernel: (channels, 1, 2·maxShift+1, 2·maxShift+1). */
export function shiftKernelShape(channels: number, maxShift: number): number[] {
  return [channels, 1, 2 * maxShift + 1, 2 * maxShift + 1];
}

/**
 * The depthwise kernel that moves every channel by (dy, dx) whole pixels, zero where the image moved
 * away: a one-hot tap in a (2·maxShift+1)² window, fed to the graphs as the `critic_shift` input.
 */
export function shiftKernel(channels: number, maxShift: number, dy: number, dx: number): FloatTensor {
  const kernel = floatTensor(shiftKernelShape(channels, maxShift));
  const side = 2 * maxShift + 1;
  // A convolution reads input (y + i - maxShift), so the tap at i = maxShift - dy moves content down by dy.
  for (let c = 0; c < channels; c++) kernel.data[c * side * side + (maxShift - dy) * side + (maxShift - dx)] = 1;
  return kernel;
}

/** `x` moved by the whole pixels that `kernel` (from `shiftKernel`, of the same `maxShift`) says. */
export function shifted(x: Value, kernel: Value, maxShift: number): Value {
  const m = maxShift;
  return op.conv(x, kernel, null, { groups: x.shape[1]!, pads: [m, m, m, m] });
}

/** The pixel critics' inputs. */
type PixelInput = Exclude<CriticInput, 'encoder'>;

export class PatchDiscriminator extends Module {
  readonly convs: ModuleList<Conv2d>;
  readonly norms: ModuleList<GroupNorm>;
  readonly conv_out: Conv2d;

  /** `normalize` false drops the group norms (a spectrally normalized critic must not rescale its activations). */
  constructor(inChannels = 3, width = 32, layers = 2, readonly input: PixelInput = 'image', normalize = true) {
    super();
    const widths = Array.from({ length: layers + 1 }, (_, i) => (i === 0 ? inChannels : width * 2 ** (i - 1)));
    this.convs = this.addModule('convs', new ModuleList(widths.slice(1).map((w, i) => new Conv2d(widths[i]!, w, 4, { stride: 2, padding: 1 }))));
    this.norms = this.addModule('norms', new ModuleList(normalize ? widths.slice(2).map((w) => new GroupNorm(Math.min(8, w), w, 1e-5)) : []));
    this.conv_out = this.addModule('conv_out', new Conv2d(widths[layers]!, 1, 3, { padding: 1 }));
  }

  /** image in [-1, 1] -> patch logits (B, 1, h, w). */
  forward(g: Graph, x: Value): Value {
    let h = this.input === 'detail' ? op.sub(x, gaussianBlur5(g, x)) : x;
    this.convs.items.forEach((c, i) => {
      h = c.forward(g, h);
      if (i > 0 && this.norms.items.length > 0) h = this.norms.items[i - 1]!.forward(g, h);
      h = op.leakyRelu(h, 0.2);
    });
    return this.conv_out.forward(g, h);
  }
}

/** One resolution's head of the projected critic: 3x3 convolution, LeakyReLU(0.2), 1x1 convolution to patch logits. */
class FeatureHead extends Module {
  readonly conv_in: Conv2d;
  readonly conv_out: Conv2d;

  constructor(channels: number, width: number) {
    super();
    this.conv_in = this.addModule('conv_in', new Conv2d(channels, width, 3, { padding: 1 }));
    this.conv_out = this.addModule('conv_out', new Conv2d(width, 1, 1));
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => this.conv_out.forward(g, op.leakyRelu(this.conv_in.forward(g, x), 0.2)));
  }
}

export class FeatureDiscriminator extends Module {
  readonly heads: ModuleList<FeatureHead>;

  /** `channels`: the feature pyramid's channels, full resolution first. */
  constructor(channels: number[], width: number) {
    super();
    this.heads = this.addModule('heads', new ModuleList(channels.map((c) => new FeatureHead(c, width))));
  }

  /** Feature maps (one per head) -> patch logits at each resolution. */
  forward(g: Graph, features: Value[]): Value[] {
    if (features.length !== this.heads.items.length) throw new Error(`FeatureDiscriminator: ${features.length} feature maps for ${this.heads.items.length} heads`);
    return this.scoped(g, () => features.map((f, i) => this.heads.items[i]!.forward(g, f)));
  }
}

export interface CriticSize {
  width: number;
  layers: number;
  input?: CriticInput;
  spectralNorm?: boolean;
  /** The pyramid levels a projected critic judges (left out: all). */
  levels?: number[];
  /** Judge images after a 5x5 binomial blur. */
  blur?: boolean;
  /** Judge images moved by up to this many pixels each way (the kernel of `shiftKernel`, fed per step). */
  shift?: number;
}

/** Roots the discriminator's parameters under `discriminator.` so they never collide with the generator's. */
export class GanCritic extends Module {
  readonly discriminator: PatchDiscriminator | FeatureDiscriminator;
  /** The pyramid levels the projected critic has heads on. */
  private readonly levels: number[] = [];

  /** `featureChannels`: the frozen encoder's pyramid, needed by `input: 'encoder'`. */
  constructor(readonly size: CriticSize = { width: 32, layers: 2 }, featureChannels?: number[]) {
    super();
    const input = size.input ?? 'image';
    if (input === 'encoder') {
      if (!featureChannels) throw new Error("GanCritic: input 'encoder' needs the encoder's feature channels");
      const beyond = size.levels?.find((l) => l >= featureChannels.length);
      if (beyond !== undefined) throw new Error(`discriminator.levels: level ${beyond} does not exist; the encoder's pyramid has levels 0 to ${featureChannels.length - 1}`);
      this.levels = size.levels ?? featureChannels.map((_, i) => i);
      this.discriminator = this.addModule('discriminator', new FeatureDiscriminator(this.levels.map((l) => featureChannels[l]!), size.width));
    } else {
      this.discriminator = this.addModule('discriminator', new PatchDiscriminator(3, size.width, size.layers, input, !size.spectralNorm));
    }
  }

  /**
   * Patch logits, one map per scale, of an image in [-1, 1]; `features(image01)` gives the frozen
   * encoder's pyramid of the image in [0, 1] (used by the projected critic only); `shift`, the
   * graph's `critic_shift` input where the critic has a `shift` setting.
   */
  logits(g: Graph, image: Value, features: (image01: Value) => Value[], shift?: Value): Value[] {
    const d = this.discriminator;
    if (this.size.shift) {
      if (!shift) throw new Error('GanCritic: a critic with a shift setting needs the critic_shift input');
      image = shifted(image, shift, this.size.shift);
    }
    if (this.size.blur) image = gaussianBlur5(g, image);
    if (!(d instanceof FeatureDiscriminator)) return [d.forward(g, image)];
    const pyramid = features(op.mul(op.add(image, 1), 0.5));
    return d.forward(g, this.levels.map((l) => pyramid[l]!));
  }
}
