import type { LossPoint } from './queue.js';

/** The most points a job's loss curve keeps: enough for a chart, small enough to go with every progress report. */
export const MAX_HISTORY = 120;

/**
 * A job's loss curve, bounded: when it is full, every other point goes and
 * new points are kept half as often, so the curve spans the whole run
 * evenly however long it is. Starts from what an earlier attempt recorded.
 */
export class LossHistory {
  private readonly kept: LossPoint[];
  private every = 1;
  private seen = 0;
  constructor(earlier: readonly LossPoint[] = []) {
    this.kept = earlier.slice(-MAX_HISTORY);
  }
  add(iteration: number, total: number): void {
    if (this.kept.length > 0 && iteration <= this.kept[this.kept.length - 1].iteration) return;
    if (this.seen++ % this.every !== 0) return;
    this.kept.push({ iteration, total });
    if (this.kept.length >= MAX_HISTORY) {
      for (let k = 1; k < this.kept.length; k++) this.kept.splice(k, 1);
      this.every *= 2;
    }
  }
  points(): LossPoint[] {
    return [...this.kept];
  }
}
