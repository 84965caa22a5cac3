import { describe, expect, it } from 'vitest';
import { PixelGate } from '@nst/server';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the decode gate', () => {
  it('lets a small decode pass a large one that does not fit yet, until the large one has waited its patience', async () => {
    const gate = new PixelGate(10, 200);
    const events: string[] = [];
    const task = (name: string, ms: number) => async () => {
      events.push(`start ${name}`);
      await sleep(ms);
      events.push(`end ${name}`);
    };
    const running = gate.run(8, task('running', 400));
    const large = gate.run(5, task('large', 10)); // 8 + 5 > 10: waits
    const small = gate.run(1, task('small', 10)); // 8 + 1 fits: passes it
    await sleep(300); // the large one has now waited longer than its patience
    const late = gate.run(1, task('late', 10)); // fits too, but may not pass it any more
    await Promise.all([running, large, small, late]);
    expect(events.indexOf('start small')).toBeLessThan(events.indexOf('end running'));
    expect(events.indexOf('start large')).toBeGreaterThan(events.indexOf('end running'));
    expect(events.indexOf('start late')).toBeGreaterThan(events.indexOf('start large'));
  });

  it('never has more pixels decoding than its capacity, and takes a decode larger than all of it alone', async () => {
    const gate = new PixelGate(10);
    let inUse = 0;
    let most = 0;
    const task = (pixels: number) => () =>
      gate.run(pixels, async () => {
        inUse += Math.min(pixels, 10);
        most = Math.max(most, inUse);
        await sleep(5);
        inUse -= Math.min(pixels, 10);
      });
    await Promise.all([3, 7, 4, 12, 1, 9, 2, 6].map((p) => task(p)()));
    expect(most).toBeLessThanOrEqual(10);
    expect(inUse).toBe(0);
  });
});
