/**
 * A perceptual term that needs no downloaded network: DISTS's structure and texture similarities
 * (dists.ts) on the feature pyramid of a frozen, pretrained TAEF2 encoder instead of VGG16, whose
 * ImageNet weights a recipe here cannot have. The encoder keeps TAEF2's own weights (read from
 * `init.vae`) while the model's encoder may train; every channel weighs the same (DISTS learned its
 * alpha/beta for VGG's channels, which these are not).
 *
 * The texture half compares per-channel means over the crop, not pixels, so unlike L1 it does not
 * reward the average of the plausible textures (a blur) over one of them. `texture` is a second term
 * on the same frozen features: EnhanceNet's patch Gram matrices (patch_gram.ts).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module } from '../nn/module.js';
import { EncoderTiny, type AutoencoderTiny } from '../models/autoencoder_tiny.js';
import { bindWeights, type TensorStore } from '../weights/bind.js';
import { sobelEdges, structureTextureDistance } from './dists.js';
import { patchGramDistance } from './patch_gram.js';

/** Side, in feature pixels, of the patches `texture` takes Gram matrices over (EnhanceNet's 16). */
export const GRAM_PATCH = 16;
/** The pyramid levels `texture` compares: full, half and quarter resolution (the 1/8 level of a 256 crop holds 4 patches). */
export const GRAM_LEVELS = 3;

export class EncoderDists extends Module {
  readonly encoder: EncoderTiny;
  private readonly channels: number;
  /** Each image's features, computed once per graph however many terms read them. */
  private readonly featureCache = new WeakMap<Value, Value[]>();

  /** A frozen copy of `vae`'s encoder architecture, parameters under `perceptual_encoder.`. */
  constructor(vae: AutoencoderTiny) {
    super();
    this.encoder = this.addModule('perceptual_encoder', new EncoderTiny(vae.encoder.config));
    const c = vae.encoder.config;
    this.channels = c.inChannels + c.blockOut.reduce((s, n) => s + n, 0);
  }

  /** Distance per image, (B,), for images in [0, 1]: the image itself, then each resolution's features. */
  forward(g: Graph, x: Value, y: Value): Value {
    return this.scoped(g, () => {
      const ones = op.floatConst(g, [1, this.channels, 1, 1], new Float32Array(this.channels).fill(1), 'encoder_dists_weights');
      return structureTextureDistance([x, ...this.features(g, x)], [y, ...this.features(g, y)], ones, ones);
    });
  }

  /**
   * The same distance between the Sobel edge maps of x and y (OSDFace's edge-aware half), each
   * repeated over the encoder's input channels: (B,).
   */
  forwardEdges(g: Graph, x: Value, y: Value): Value {
    const channels = this.encoder.config.inChannels;
    const edges = (v: Value) => op.concat(Array.from({ length: channels }, () => sobelEdges(v)), 1);
    return this.forward(g, edges(x), edges(y));
  }

  private features(g: Graph, x: Value): Value[] {
    let f = this.featureCache.get(x);
    if (!f) this.featureCache.set(x, (f = this.encoder.features(g, x)));
    return f;
  }

  /**
   * EnhanceNet's texture distance (patch_gram.ts) on the encoder's full-, half- and quarter-resolution
   * features of x and y (B, 3, H, W) in [0, 1]: (B,).
   */
  texture(g: Graph, x: Value, y: Value): Value {
    return this.scoped(g, () => {
      const levels = (v: Value) => this.features(g, v).slice(0, GRAM_LEVELS);
      return patchGramDistance(levels(x), levels(y), GRAM_PATCH);
    });
  }

  /** TAEF2's pretrained encoder tensors (keys `encoder.*` of a taef2 folder), keyed as this module's parameters. */
  weightsFrom(store: TensorStore): Map<string, Float32Array> {
    const params = this.namedParameters();
    const source = bindWeights(store, params, { aliases: (k) => [k.replace(/^perceptual_encoder\./, 'encoder.')] });
    return new Map(params.map(([k, shape]) => [k, source.read(k, shape)]));
  }
}
