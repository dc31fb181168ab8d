// A job's rate and time left from its progress over time, without I/O: samples (time, bytes done)
// in, figures out. QEMU moves a rate-limited job in bursts (a chunk, then a pause), so a rate from
// two neighbouring polls swings from zero to many times the limit; the rate here is taken over a
// window of the last few seconds, and only once the window spans long enough to mean something.
// The time left is given only while the rate is steady (recent window rates agree), and neither
// is given for a job that is not running (paused, ready, finished: nothing moves).

export interface ProgressFigures {
  /** bytes per second over the window, or null while unknown */
  rate: number | null;
  /** seconds to go, or null while the rate is unknown or unsteady */
  etaSeconds: number | null;
}

export const WINDOW_MS = 3000;
/** the window must span this long before a rate is given */
export const MIN_SPAN_MS = 1000;
/** the last rates must agree within this fraction for a time left to be given */
export const STEADY = 0.25;
const HISTORY = 4;
/** window rates kept for the steadiness check are at least this far apart */
const HISTORY_STEP_MS = 500;

export class ProgressWindow {
  private samples: { at: number; done: number }[] = [];
  private rates: { at: number; rate: number }[] = [];

  /** A poll's reading. Progress that goes backwards (a job restarted its count) starts afresh. */
  push(at: number, done: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && (done < last.done || at < last.at)) this.reset();
    if (last && at === last.at) last.done = done;
    else this.samples.push({ at, done });
    while (this.samples.length > 2 && at - this.samples[1].at >= WINDOW_MS) this.samples.shift();
    const r = this.windowRate();
    const lastRate = this.rates[this.rates.length - 1];
    if (r !== null && (!lastRate || at - lastRate.at >= HISTORY_STEP_MS)) {
      this.rates.push({ at, rate: r });
      if (this.rates.length > HISTORY) this.rates.shift();
    }
  }

  /** Not moving (paused, standby, ready): the window starts again when it moves. */
  reset(): void {
    this.samples = [];
    this.rates = [];
  }

  private windowRate(): number | null {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || last.at - first.at < MIN_SPAN_MS) return null;
    return ((last.done - first.done) * 1000) / (last.at - first.at);
  }

  figures(total: number, running: boolean): ProgressFigures {
    if (!running) return { rate: null, etaSeconds: null };
    const rate = this.windowRate();
    if (rate === null) return { rate: null, etaSeconds: null };
    const last = this.samples[this.samples.length - 1];
    const steady = this.rates.length >= 2 && rate > 0 && this.rates.every((r) => Math.abs(r.rate - rate) <= STEADY * rate);
    return { rate, etaSeconds: steady ? Math.max(0, (total - last.done) / rate) : null };
  }
}
