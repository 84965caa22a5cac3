/**
 * The CUDA engine refuses a session or a style image that does not fit in
 * free GPU memory before allocating (native/src/cuda/plan.cc's
 * out_of_memory_message, session.cc's style check); the backend passes that
 * on as the user's error (exit status 2 at the CLI), naming the field.
 */
import { describe, expect, it } from 'vitest';
import { isUserError } from '@nst/core';
import { tooLargeAsUserError } from '../src/backend.js';

describe('cuda out-of-memory refusals', () => {
  it('are user errors on --size or --style-scale; anything else stays a bug', () => {
    const session = tooLargeAsUserError(
      new Error(
        'cuda: a 16384x16384 batch 1 session needs about 402.1 GiB but 138.2 GiB is free on NVIDIA H200; the largest that fits is about 9520x9520 at batch 1',
      ),
    );
    expect(isUserError(session) && session.code === 'too-large' && session.field).toBe('size');
    expect((session as Error).message).toMatch(
      /^size: cuda: a 16384x16384 batch 1 session needs about .* the largest that fits is about 9520x9520/,
    );
    const style = tooLargeAsUserError(
      new Error('cuda: style image 16000x12000 needs about 40.0 GiB but 10.0 GiB is free on NVIDIA H200; use a smaller style image'),
    );
    expect(isUserError(style) && style.field).toBe('styleScale');
    const other = new Error('cuda: cudaMalloc failed: out of memory');
    expect(tooLargeAsUserError(other)).toBe(other);
  });
});
