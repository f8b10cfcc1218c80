/**
 * filter2D (./ops.ts) as an ONNX Runtime depthwise convolution: the same reflected border
 * (BORDER_REFLECT_101) and the same kernel, in float32 instead of the float64 sums of the plain
 * version (outputs agree to about 1e-6). A 41 x 41 blur of a 512 x 512 image is over a second in
 * plain TypeScript and a few tens of milliseconds here, which is what lets training degrade its
 * faces on the fly (`degrade(..., { filter2D })`).
 */
import { Graph } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import { floatTensor } from '../tensor.js';
import type { FloatImage } from './ops.js';

function filterGraph(ksize: number): Graph {
  const r = (ksize - 1) / 2;
  const g = new Graph(`filter2d_${ksize}`);
  const image = g.input('image', 'float32', ['height', 'width', 3], [2 * ksize, 2 * ksize, 3]);
  const kernel = g.input('kernel', 'float32', [3, 1, ksize, ksize]);
  const planar = op.unsqueeze(op.transpose(image, [2, 0, 1]), [0]);
  const padded = op.pad(planar, [0, 0, r, r, 0, 0, r, r], 'reflect');
  const blurred = op.conv(padded, kernel, null, { groups: 3 });
  // (1, 3, H, W) -> (1, H, W, 3): the same values as an interleaved H x W x 3 image.
  g.output(op.transpose(blurred, [0, 2, 3, 1]), 'blurred');
  return g;
}

export class OnnxFilter2D {
  private readonly sessions = new Map<number, Promise<OnnxSession>>();

  constructor(private readonly threads = 1) {}

  /** The same result as filter2D(img, kernel, ksize), computed by ONNX Runtime. */
  readonly apply = async (img: FloatImage, kernel: Float64Array, ksize: number): Promise<FloatImage> => {
    if (ksize % 2 !== 1 || kernel.length !== ksize * ksize) throw new Error(`filter2D: kernel must be an odd square, got ${kernel.length} values for side ${ksize}`);
    let s = this.sessions.get(ksize);
    if (!s) {
      s = OnnxSession.create(emitOnnx(filterGraph(ksize), { weights: { read: (k) => { throw new Error(`no weight ${k}`); } } }), { threads: this.threads });
      this.sessions.set(ksize, s);
    }
    const k = new Float32Array(3 * ksize * ksize);
    for (let c = 0; c < 3; c++) k.set(Float32Array.from(kernel), c * ksize * ksize);
    const out = await (await s).run({ image: floatTensor([img.height, img.width, 3], img.data), kernel: floatTensor([3, 1, ksize, ksize], k) });
    return { data: out.blurred!.data as Float32Array, width: img.width, height: img.height };
  };

  async dispose(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
