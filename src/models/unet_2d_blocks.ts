/**
 * diffusers models/unets/unet_2d_blocks.py: the UNet's down/mid/up blocks and the VAE's
 * DownEncoderBlock2D / UpDecoderBlock2D / UNetMidBlock2D.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.js';
import { Transformer2DModel } from './transformer_2d.js';
import { Attention } from './attention.js';

export interface BlockConfig {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number | null;
  eps: number;
  groups: number;
  outputScaleFactor?: number;
}

export interface CrossAttnConfig {
  heads: number;
  transformerLayers: number;
  crossAttentionDim: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
}

function transformer(channels: number, groups: number, x: CrossAttnConfig): Transformer2DModel {
  return new Transformer2DModel({
    heads: x.heads, dimHead: channels / x.heads, inChannels: channels, numLayers: x.transformerLayers,
    crossAttentionDim: x.crossAttentionDim, normNumGroups: groups, useLinearProjection: x.useLinearProjection,
    onlyCrossAttention: x.onlyCrossAttention,
  });
}

function resnet(cfg: BlockConfig, inChannels: number, outChannels = cfg.outChannels): ResnetBlock2D {
  return new ResnetBlock2D({ inChannels, outChannels, tembChannels: cfg.tembChannels, groups: cfg.groups, eps: cfg.eps, outputScaleFactor: cfg.outputScaleFactor });
}

export interface DownBlockOutput {
  hidden: Value;
  /** Every intermediate state the up path concatenates back, in order. */
  skips: Value[];
}

/** DownBlock2D (cross = undefined) and CrossAttnDownBlock2D. */
export class DownBlock2D extends Module {
  readonly attentions?: ModuleList<Transformer2DModel>;
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers?: ModuleList<Downsample2D>;

  constructor(cfg: BlockConfig, addDownsample: boolean, downsamplePadding: number, cross?: CrossAttnConfig) {
    super();
    const layers = Array.from({ length: cfg.numLayers }, (_, i) => i);
    if (cross) this.attentions = this.addModule('attentions', new ModuleList(layers.map(() => transformer(cfg.outChannels, cfg.groups, cross))));
    this.resnets = this.addModule('resnets', new ModuleList(layers.map((i) => resnet(cfg, i === 0 ? cfg.inChannels : cfg.outChannels))));
    if (addDownsample) this.downsamplers = this.addModule('downsamplers', new ModuleList([new Downsample2D(cfg.outChannels, downsamplePadding)]));
  }

  forward(g: Graph, x: Value, temb: Value | null, context?: Value): DownBlockOutput {
    const skips: Value[] = [];
    let h = x;
    this.resnets.items.forEach((r, i) => {
      h = r.forward(g, h, temb);
      if (this.attentions) h = this.attentions.items[i]!.forward(g, h, context!);
      skips.push(h);
    });
    if (this.downsamplers) {
      h = this.downsamplers.items[0]!.forward(g, h);
      skips.push(h);
    }
    return { hidden: h, skips };
  }
}

/** UpBlock2D (cross = undefined) and CrossAttnUpBlock2D. */
export class UpBlock2D extends Module {
  readonly attentions?: ModuleList<Transformer2DModel>;
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers?: ModuleList<Upsample2D>;

  constructor(cfg: BlockConfig, prevOutputChannels: number, addUpsample: boolean, cross?: CrossAttnConfig) {
    super();
    const layers = Array.from({ length: cfg.numLayers }, (_, i) => i);
    if (cross) this.attentions = this.addModule('attentions', new ModuleList(layers.map(() => transformer(cfg.outChannels, cfg.groups, cross))));
    this.resnets = this.addModule('resnets', new ModuleList(layers.map((i) => {
      const skipChannels = i === cfg.numLayers - 1 ? cfg.inChannels : cfg.outChannels;
      const hiddenChannels = i === 0 ? prevOutputChannels : cfg.outChannels;
      return resnet(cfg, hiddenChannels + skipChannels);
    })));
    if (addUpsample) this.upsamplers = this.addModule('upsamplers', new ModuleList([new Upsample2D(cfg.outChannels)]));
  }

  /** `skips` are consumed from the end; `upsampleTo` is the [h, w] of the next skip connection. */
  forward(g: Graph, x: Value, skips: Value[], temb: Value | null, context?: Value, upsampleTo?: Value): Value {
    let h = x;
    this.resnets.items.forEach((r, i) => {
      const skip = skips.pop();
      if (!skip) return this.scoped(g, () => g.fail('ran out of skip connections'));
      h = r.forward(g, this.scoped(g, () => op.concat([h, skip], 1)), temb);
      if (this.attentions) h = this.attentions.items[i]!.forward(g, h, context!);
    });
    if (this.upsamplers) h = this.upsamplers.items[0]!.forward(g, h, upsampleTo);
    return h;
  }
}

/** UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) pairs. */
export class UNetMidBlock2DCrossAttn extends Module {
  readonly attentions: ModuleList<Transformer2DModel>;
  readonly resnets: ModuleList<ResnetBlock2D>;

  constructor(cfg: BlockConfig, cross: CrossAttnConfig) {
    super();
    this.attentions = this.addModule('attentions', new ModuleList(Array.from({ length: cfg.numLayers }, () => transformer(cfg.inChannels, cfg.groups, cross))));
    this.resnets = this.addModule('resnets', new ModuleList(Array.from({ length: cfg.numLayers + 1 }, () => resnet(cfg, cfg.inChannels, cfg.inChannels))));
  }

  forward(g: Graph, x: Value, temb: Value | null, context: Value): Value {
    let h = this.resnets.items[0]!.forward(g, x, temb);
    this.attentions.items.forEach((a, i) => {
      h = this.resnets.items[i + 1]!.forward(g, a.forward(g, h, context), temb);
    });
    return h;
  }
}

/** UNetMidBlock2D as the VAE uses it: resnet, then (single-head spatial attention, resnet) pairs. */
export class UNetMidBlock2D extends Module {
  readonly attentions?: ModuleList<Attention>;
  readonly resnets: ModuleList<ResnetBlock2D>;

  constructor(cfg: BlockConfig, attentionHeadDim: number, addAttention = true) {
    super();
    const c = cfg.inChannels;
    if (addAttention) {
      this.attentions = this.addModule('attentions', new ModuleList(Array.from({ length: cfg.numLayers }, () => new Attention({
        queryDim: c, heads: c / attentionHeadDim, dimHead: attentionHeadDim, bias: true, normNumGroups: cfg.groups, eps: cfg.eps,
        residualConnection: true, rescaleOutputFactor: cfg.outputScaleFactor ?? 1,
      }))));
    }
    this.resnets = this.addModule('resnets', new ModuleList(Array.from({ length: cfg.numLayers + 1 }, () => resnet(cfg, c, c))));
  }

  forward(g: Graph, x: Value, temb: Value | null): Value {
    let h = this.resnets.items[0]!.forward(g, x, temb);
    for (let i = 0; i < this.resnets.length - 1; i++) {
      if (this.attentions) h = this.attentions.items[i]!.forward(g, h);
      h = this.resnets.items[i + 1]!.forward(g, h, temb);
    }
    return h;
  }
}

/** DownEncoderBlock2D: resnets then an optional downsampler, no skips kept. */
export class DownEncoderBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers?: ModuleList<Downsample2D>;

  constructor(cfg: BlockConfig, addDownsample: boolean, downsamplePadding: number) {
    super();
    this.resnets = this.addModule('resnets', new ModuleList(Array.from({ length: cfg.numLayers }, (_, i) => resnet(cfg, i === 0 ? cfg.inChannels : cfg.outChannels))));
    if (addDownsample) this.downsamplers = this.addModule('downsamplers', new ModuleList([new Downsample2D(cfg.outChannels, downsamplePadding)]));
  }

  forward(g: Graph, x: Value): Value {
    let h = x;
    for (const r of this.resnets.items) h = r.forward(g, h, null);
    return this.downsamplers ? this.downsamplers.items[0]!.forward(g, h) : h;
  }
}

/** UpDecoderBlock2D: resnets then an optional 2x upsampler. */
export class UpDecoderBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers?: ModuleList<Upsample2D>;

  constructor(cfg: BlockConfig, addUpsample: boolean) {
    super();
    this.resnets = this.addModule('resnets', new ModuleList(Array.from({ length: cfg.numLayers }, (_, i) => resnet(cfg, i === 0 ? cfg.inChannels : cfg.outChannels))));
    if (addUpsample) this.upsamplers = this.addModule('upsamplers', new ModuleList([new Upsample2D(cfg.outChannels)]));
  }

  forward(g: Graph, x: Value): Value {
    let h = x;
    for (const r of this.resnets.items) h = r.forward(g, h, null);
    return this.upsamplers ? this.upsamplers.items[0]!.forward(g, h) : h;
  }
}
