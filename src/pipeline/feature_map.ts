/**
 * Whole feature maps of the tiled VAE (tiled_vae.ts), which crops tiles from them and pastes tile
 * cores into them: in memory, or in a temporary file so that the process holds only tiles.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type FloatTensor, floatTensor } from '../tensor.js';
import { checkCoreFits, type CoreWindow, crop, dims4, type GroupSums, pasteCore } from './tiling.js';

/** A (B, C, H, W) float32 map the tiled VAE crops tiles from and pastes tile cores into. */
export interface FeatureMap {
  readonly shape: [number, number, number, number];
  /** map[:, :, y0:y1, x0:x1] as a tensor (written into `reuse` when that has the right length). */
  crop(y0: number, y1: number, x0: number, x1: number, reuse?: Float32Array): FloatTensor;
  /** map[:, :, dy:dy+h, dx:dx+w] = tile[:, :, sy:sy+h, sx:sx+w], adding the core to `sums` on the way. */
  paste(tile: FloatTensor, win: CoreWindow, sums?: GroupSums): void;
  /** The whole map as a tensor. */
  tensor(): FloatTensor;
  /** Frees the map (deletes its file). */
  dispose(): void;
}

export class MemoryMap implements FeatureMap {
  readonly shape: [number, number, number, number];
  constructor(readonly t: FloatTensor) {
    this.shape = dims4(t, 'feature map');
  }
  crop(y0: number, y1: number, x0: number, x1: number, reuse?: Float32Array): FloatTensor {
    return crop(this.t, y0, y1, x0, x1, reuse);
  }
  paste(tile: FloatTensor, win: CoreWindow, sums?: GroupSums): void {
    pasteCore(this.t, tile, win, sums);
  }
  tensor(): FloatTensor {
    return this.t;
  }
  dispose(): void {}
}

/**
 * A feature map in a temporary file (NCHW float32, one read or write per channel row of a
 * tile): the operating system caches it while memory is free, and the process holds only tiles.
 */
export class FileMap implements FeatureMap {
  private readonly file: string;
  private fd: number;

  constructor(readonly shape: [number, number, number, number], dir = os.tmpdir()) {
    const [B, C, H, W] = shape;
    this.file = path.join(fs.mkdtempSync(path.join(dir, 'osdface-vae-')), 'map.f32');
    this.fd = fs.openSync(this.file, 'w+');
    fs.ftruncateSync(this.fd, B * C * H * W * 4);
  }

  private bytes(t: FloatTensor): Uint8Array {
    return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  }

  crop(y0: number, y1: number, x0: number, x1: number, reuse?: Float32Array): FloatTensor {
    const [B, C, H, W] = this.shape;
    const h = y1 - y0, w = x1 - x0;
    const out = floatTensor([B, C, h, w], reuse?.length === B * C * h * w ? reuse : undefined);
    const to = this.bytes(out);
    for (let bc = 0; bc < B * C; bc++) {
      for (let y = 0; y < h; y++) fs.readSync(this.fd, to, (bc * h + y) * w * 4, w * 4, ((bc * H + y0 + y) * W + x0) * 4);
    }
    return out;
  }

  paste(tile: FloatTensor, win: CoreWindow, sums?: GroupSums): void {
    const [B, C, H, W] = this.shape;
    const [th, tw] = checkCoreFits(this.shape, tile, win);
    const from = this.bytes(tile);
    for (let bc = 0; bc < B * C; bc++) {
      for (let y = 0; y < win.h; y++) {
        fs.writeSync(this.fd, from, ((bc * th + win.sy + y) * tw + win.sx) * 4, win.w * 4, ((bc * H + win.dy + y) * W + win.dx) * 4);
      }
    }
    sums?.addCore(tile, win);
  }

  tensor(): FloatTensor {
    const [, , H, W] = this.shape;
    return this.crop(0, H, 0, W);
  }

  dispose(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(path.dirname(this.file), { recursive: true, force: true });
  }
}
