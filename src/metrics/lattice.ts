/**
 * Lattice ratio: how much of an image's fine detail repeats on an 8-pixel grid, the mesh a model
 * whose decoder draws each 8x8 cell from one latent vector leaves when asked for texture it cannot
 * place (GAN guidance, Gram-matrix texture losses). No reference image is needed. About 1 for
 * photographs; well above 1 for a mesh.
 *
 * 1. Detail: the grey image (mean of R, G, B, in [0, 1]) minus its 5x5 binomial blur ([1 4 6 4 1]/16
 *    each way, edges replicated).
 * 2. Per 32x32 patch (whole patches from the top left), the mean of the detail over the patch's 16
 *    cells at each of the 64 positions within an 8x8 cell.
 * 3. The mean square of those phase means over positions and patches, divided by the mean square
 *    of the detail / 16: the value the phase means of detail with no preferred phase would have.
 *
 * The training loss `loss.lattice` (src/train/lattice.ts) penalises the same phase means.
 */
import type { RgbImage } from '../image/pixels.js';

const CELL = 8;
const PATCH = 32;
const TAPS = [1, 4, 6, 4, 1].map((v) => v / 16);

/** The lattice ratio of `img` (at least 32x32 pixels). */
export function latticeRatio(img: RgbImage): number {
  const { width: w, height: h, data } = img;
  if (w < PATCH || h < PATCH) throw new Error(`lattice: needs at least ${PATCH}x${PATCH} pixels, the image is ${w}x${h}`);
  const grey = new Float64Array(w * h);
  for (let i = 0; i < w * h; i++) grey[i] = (data[3 * i]! + data[3 * i + 1]! + data[3 * i + 2]!) / 765;
  const across = new Float64Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    let s = 0;
    for (let j = -2; j <= 2; j++) s += TAPS[j + 2]! * grey[y * w + Math.min(w - 1, Math.max(0, x + j))]!;
    across[y * w + x] = s;
  }
  const detail = new Float64Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    let s = 0;
    for (let j = -2; j <= 2; j++) s += TAPS[j + 2]! * across[Math.min(h - 1, Math.max(0, y + j)) * w + x]!;
    detail[y * w + x] = grey[y * w + x]! - s;
  }
  const cells = (PATCH / CELL) ** 2;
  let phaseEnergy = 0;
  let detailEnergy = 0;
  let patches = 0;
  for (let py = 0; py + PATCH <= h; py += PATCH) for (let px = 0; px + PATCH <= w; px += PATCH) {
    for (let a = 0; a < CELL; a++) for (let b = 0; b < CELL; b++) {
      let sum = 0;
      for (let cy = a; cy < PATCH; cy += CELL) for (let cx = b; cx < PATCH; cx += CELL) {
        const v = detail[(py + cy) * w + px + cx]!;
        sum += v;
        detailEnergy += v * v;
      }
      phaseEnergy += (sum / cells) ** 2;
    }
    patches++;
  }
  const perPixel = detailEnergy / (patches * PATCH * PATCH);
  return perPixel === 0 ? 0 : phaseEnergy / (patches * CELL * CELL) / (perPixel / cells);
}
