/** diffusers models/unets/unet_2d_condition.py: UNet2DConditionModel (the SD 1.x/2.x subset). */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';
import { Config } from './config.js';
import { TimestepEmbedding, timestepEmbedding } from './embeddings.js';
import { DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, type BlockConfig, type CrossAttnConfig } from './unet_2d_blocks.js';

const DOWN_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'];

export class UNet2DConditionModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly down_blocks: ModuleList<DownBlock2D>;
  readonly up_blocks: ModuleList<UpBlock2D>;
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  readonly inChannels: number;
  readonly outChannels: number;
  readonly crossAttentionDim: number;
  private readonly flipSinToCos: boolean;
  private readonly freqShift: number;
  private readonly centerInputSample: boolean;
  private readonly timeChannels: number;

  constructor(readonly config: Config) {
    super();
    const c = config;
    c.requireDefault('act_fn', ['silu']);
    c.requireDefault('time_embedding_type', ['positional']);
    c.requireDefault('resnet_time_scale_shift', ['default']);
    c.requireDefault('mid_block_type', ['UNetMidBlock2DCrossAttn']);
    c.requireDefault('dual_cross_attention', [false]);
    c.requireDefault('conv_in_kernel', [3]);
    c.requireDefault('conv_out_kernel', [3]);
    c.requireDefault('attention_type', ['default']);
    c.requireDefault('resnet_skip_time_act', [false]);
    c.requireDefault('resnet_out_scale_factor', [1, 1.0]);
    for (const key of ['class_embed_type', 'num_class_embeds', 'addition_embed_type', 'encoder_hid_dim', 'time_cond_proj_dim',
      'timestep_post_act', 'time_embedding_act_fn', 'cross_attention_norm', 'projection_class_embeddings_input_dim']) {
      if (c.isSet(key)) c.fail(key, 'is not supported by this port (SD 1.x/2.x UNets only)');
    }

    const downTypes = c.strings('down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
    const upTypes = c.strings('up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
    for (const t of downTypes) if (!DOWN_TYPES.includes(t)) c.fail('down_block_types', `contains unsupported block '${t}'`);
    for (const t of upTypes) if (!UP_TYPES.includes(t)) c.fail('up_block_types', `contains unsupported block '${t}'`);
    const n = downTypes.length;
    if (upTypes.length !== n) c.fail('up_block_types', `has ${upTypes.length} entries, down_block_types has ${n}`);
    const blockOut = c.ints('block_out_channels', [320, 640, 1280, 1280]);
    if (blockOut.length !== n) c.fail('block_out_channels', `has ${blockOut.length} entries, expected ${n}`);
    const layers = c.perBlock('layers_per_block', n, 2);
    const transformerLayers = c.perBlock('transformer_layers_per_block', n, 1);
    // SD 2.x configs put the number of heads in attention_head_dim (a long-standing diffusers naming quirk).
    const heads = c.isSet('num_attention_heads') ? c.perBlock('num_attention_heads', n) : c.perBlock('attention_head_dim', n, 8);
    const groups = c.int('norm_num_groups', 32);
    const eps = c.number('norm_eps', 1e-5);
    const crossDim = c.int('cross_attention_dim', 1280);
    const onlyCross = c.isSet('only_cross_attention') && typeof c.raw['only_cross_attention'] !== 'boolean'
      ? c.fail('only_cross_attention', 'per-block lists are not supported') : c.bool('only_cross_attention', false);
    const linearProj = c.bool('use_linear_projection', false);
    // Upcasting q/k (upcast_attention) or the softmax to float32 changes nothing in a float32 graph.
    c.bool('upcast_attention', false);
    this.inChannels = c.int('in_channels', 4);
    this.outChannels = c.int('out_channels', 4);
    this.crossAttentionDim = crossDim;
    this.flipSinToCos = c.bool('flip_sin_to_cos', true);
    this.freqShift = c.number('freq_shift', 0);
    this.centerInputSample = c.bool('center_input_sample', false);
    this.timeChannels = blockOut[0]!;
    const tembChannels = blockOut[0]! * 4;
    blockOut.forEach((ch, i) => {
      if (ch % heads[i]! !== 0) c.fail('block_out_channels', `${ch} channels of block ${i} are not divisible into ${heads[i]} attention heads`);
      if (ch % groups !== 0) c.fail('norm_num_groups', `${groups} groups do not divide the ${ch} channels of block ${i}`);
    });
    const cross = (i: number, h = heads, t = transformerLayers): CrossAttnConfig => ({
      heads: h[i]!, transformerLayers: t[i]!, crossAttentionDim: crossDim, useLinearProjection: linearProj, onlyCrossAttention: onlyCross,
    });

    this.conv_in = this.addModule('conv_in', new Conv2d(this.inChannels, blockOut[0]!, 3, { padding: 1 }));
    this.time_embedding = this.addModule('time_embedding', new TimestepEmbedding(this.timeChannels, tembChannels));
    this.down_blocks = this.addModule('down_blocks', new ModuleList<DownBlock2D>());
    this.up_blocks = this.addModule('up_blocks', new ModuleList<UpBlock2D>());

    let outCh = blockOut[0]!;
    downTypes.forEach((type, i) => {
      const inCh = outCh;
      outCh = blockOut[i]!;
      const cfg: BlockConfig = { numLayers: layers[i]!, inChannels: inCh, outChannels: outCh, tembChannels, eps, groups };
      this.down_blocks.push(new DownBlock2D(cfg, i < n - 1, c.int('downsample_padding', 1), type === 'CrossAttnDownBlock2D' ? cross(i) : undefined));
    });

    const last = n - 1;
    this.mid_block = this.addModule('mid_block', new UNetMidBlock2DCrossAttn(
      { numLayers: 1, inChannels: blockOut[last]!, outChannels: blockOut[last]!, tembChannels, eps, groups, outputScaleFactor: c.number('mid_block_scale_factor', 1) },
      cross(last),
    ));

    const rev = <T>(a: T[]) => [...a].reverse();
    const revOut = rev(blockOut);
    const revHeads = rev(heads);
    const revLayers = rev(layers);
    const revTransformer = c.isSet('reverse_transformer_layers_per_block') ? c.perBlock('reverse_transformer_layers_per_block', n) : rev(transformerLayers);
    outCh = revOut[0]!;
    upTypes.forEach((type, i) => {
      const prevOut = outCh;
      outCh = revOut[i]!;
      const inCh = revOut[Math.min(i + 1, n - 1)]!;
      const cfg: BlockConfig = { numLayers: revLayers[i]! + 1, inChannels: inCh, outChannels: outCh, tembChannels, eps, groups };
      this.up_blocks.push(new UpBlock2D(cfg, prevOut, i < n - 1, type === 'CrossAttnUpBlock2D' ? cross(i, revHeads, revTransformer) : undefined));
    });

    this.conv_norm_out = this.addModule('conv_norm_out', new GroupNorm(groups, blockOut[0]!, eps));
    this.conv_out = this.addModule('conv_out', new Conv2d(blockOut[0]!, this.outChannels, 3, { padding: 1 }));
  }

  /** sample (B, C, H, W), timestep (1 or B,) float32, context (B, L, cross_attention_dim) -> (B, out, H, W). */
  forward(g: Graph, sample: Value, timestep: Value, context: Value): Value {
    if (context.shape[2] !== this.crossAttentionDim) {
      g.fail(`encoder_hidden_states has ${context.shape[2]} features, the UNet's cross_attention_dim is ${this.crossAttentionDim}`);
    }
    const temb = this.time_embedding.forward(g, g.scope('time_proj', () => timestepEmbedding(timestep, this.timeChannels, this.flipSinToCos, this.freqShift)));
    const input = this.centerInputSample ? op.sub(op.mul(sample, 2), 1) : sample;
    let h = this.conv_in.forward(g, input);
    const skips: Value[] = [h];
    for (const block of this.down_blocks.items) {
      const out = block.forward(g, h, temb, context);
      h = out.hidden;
      skips.push(...out.skips);
    }
    h = this.mid_block.forward(g, h, temb, context);
    this.up_blocks.items.forEach((block, i) => {
      const own = skips.splice(skips.length - block.resnets.length);
      const next = skips[skips.length - 1];
      const upsampleTo = i < this.up_blocks.length - 1 && next ? op.slice(op.shapeOf(next), 0, 2, 4) : undefined;
      h = block.forward(g, h, own, temb, context, upsampleTo);
    });
    return this.conv_out.forward(g, op.silu(this.conv_norm_out.forward(g, h)));
  }
}
