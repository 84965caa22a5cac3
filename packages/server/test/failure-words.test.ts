import { UserError } from '@nst/core';
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { inUserWords } from '@nst/server';

// Issue 23: a failure blamed `lr`, which the user had not set, and showed a temporary path on the worker.
// The errors below are the ones the render throws (packages/job/src/loop.ts), with a worker's scratch paths.
const scratch = '/tmp/nst-worker-Ab12Cd/jobs/0b7c0c1e-0000-4000-8000-000000000001';
const names = new Map([
  ['/tmp/nst-worker-Ab12Cd/inputs/5f2e9a', 'harbour.jpg'],
  [scratch, 'the result'],
]);
const diverged = new UserError(
  `the loss became infinite at iteration 41: the learning rate is likely too high, or a layer, content, style or smoothness weight too large; the last finite image (iteration 40) is in '${scratch}/result_40.png'`,
  { code: 'not-finite', field: 'lr' },
);

describe('a failure in the user words', () => {
  it('names the field the user set, not the one the render guessed, and offers no file of the worker', () => {
    const e = inUserWords(diverged, names, { beta: '1e11', size: '64x48' });
    expect(e).toBeInstanceOf(UnrecoverableError);
    expect(e.message).toBe(
      'beta: the loss became infinite at iteration 41: the learning rate is likely too high, or a layer, content, style or smoothness weight too large; the last finite image was at iteration 40',
    );
    // The user set lr: it stays the one named; set nothing suspect: the render's guess stands.
    expect(inUserWords(diverged, names, { lr: '500', beta: '1e11' }).message).toMatch(/^lr: /);
    expect(inUserWords(diverged, names, { size: '64x48' }).message).toMatch(/^lr: /);
  });

  it("names the user's uploads by their names and hides any other path", () => {
    const unreadable = new UserError("cannot decode '/tmp/nst-worker-Ab12Cd/inputs/5f2e9a' (bad Huffman table)", {
      code: 'unreadable',
      field: 'content',
    });
    expect(inUserWords(unreadable, names, {}).message).toBe("content: cannot decode 'harbour.jpg' (bad Huffman table)");
    const crash = new Error("ENOSPC: no space left on device, write '/var/tmp/nst-worker-Zz/jobs/x/result.png'");
    const retried = inUserWords(crash, names, {});
    expect(retried).not.toBeInstanceOf(UnrecoverableError);
    expect(retried.message).toBe("ENOSPC: no space left on device, write '<path>'");
  });
});
