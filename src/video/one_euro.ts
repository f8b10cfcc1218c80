/**
 * The one-euro filter (Casiez, Roussel and Vogel, CHI 2012): an exponential smoother whose
 * cutoff frequency rises with the signal's speed, so a still value is smoothed hard (little
 * jitter) and a moving one is followed closely (little lag). Cutoffs in Hz, time in seconds.
 */
export interface OneEuroOptions {
  /** Cutoff at rest (Hz): lower smooths more. */
  minCutoff: number;
  /** How fast the cutoff rises with speed (per unit of the value per second): higher lags less. */
  beta: number;
  /** Cutoff of the speed estimate (Hz). */
  dCutoff: number;
}

export const DEFAULT_ONE_EURO: OneEuroOptions = { minCutoff: 1, beta: 1, dCutoff: 1 };

/** The smoothing factor of an exponential filter with this cutoff, for samples `dt` apart. */
function alpha(dt: number, cutoff: number): number {
  const tau = 1 / (2 * Math.PI * cutoff);
  return 1 / (1 + tau / dt);
}

export class OneEuroFilter {
  private x: number | null = null;
  private dx = 0;
  private t = 0;

  constructor(private readonly opts: OneEuroOptions = DEFAULT_ONE_EURO) {
    if (!(opts.minCutoff > 0) || !(opts.dCutoff > 0) || !(opts.beta >= 0)) {
      throw new RangeError(`OneEuroFilter: minCutoff and dCutoff must be > 0 and beta >= 0, got ${JSON.stringify(opts)}`);
    }
  }

  /** The filtered value of the sample `value` taken at time `t` (seconds, increasing). */
  filter(value: number, t: number): number {
    if (this.x === null) {
      this.x = value;
      this.t = t;
      return value;
    }
    const dt = t - this.t;
    if (!(dt > 0)) return this.x;
    this.t = t;
    const speed = (value - this.x) / dt;
    this.dx += alpha(dt, this.opts.dCutoff) * (speed - this.dx);
    const cutoff = this.opts.minCutoff + this.opts.beta * Math.abs(this.dx);
    this.x += alpha(dt, cutoff) * (value - this.x);
    return this.x;
  }
}
