import { describe, expect, it } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { JOB_OPTIONS, jobFromOptions } from '@nst/job';

describe('the one job description', () => {
  it('applies the notebook defaults (spec: 400x300, 200 iterations, lr 2, alpha 10, beta 40)', () => {
    const job = jobFromOptions({ content: 'c.jpg', style: 's.jpg', out: 'o.png' });
    expect(job.size).toEqual({ kind: 'exact', width: 400, height: 300 });
    expect(job.iterations).toBe(200);
    expect(job.adam.lr).toBe(2);
    expect(job.loss.alpha).toBe(10);
    expect(job.loss.beta).toBe(40);
    expect(job.loss.contentLayers).toEqual([{ layer: 'conv4_2', weight: 1 }]);
    expect(job.loss.styleLayers).toEqual(DEFAULT_LOSS.styleLayers);
    expect(job.resume).toBe(false);
    expect(job.weights).toBeUndefined();
  });

  it('takes text (CLI, CSV) and JSON values alike', () => {
    const fromText = jobFromOptions({
      content: ['c.jpg'],
      style: 'a.jpg,b.jpg',
      out: 'o.png',
      iterations: '30',
      lr: '0.5',
      resume: 'true',
    });
    const fromJson = jobFromOptions({ content: 'c.jpg', style: ['a.jpg', 'b.jpg'], out: 'o.png', iterations: 30, lr: 0.5, resume: true });
    expect(fromJson).toEqual(fromText);
    expect(fromText.styles).toEqual(['a.jpg', 'b.jpg']);
    expect(fromText.iterations).toBe(30);
  });

  it('refuses unknown options, missing required ones and bad values, naming the field', () => {
    const base = { content: 'c.jpg', style: 's.jpg', out: 'o.png' };
    expect(() => jobFromOptions({ ...base, iteratons: '3' })).toThrow(
      expect.objectContaining({ field: 'iteratons', detail: "'iteratons' is not a render option" }),
    );
    expect(() => jobFromOptions({ content: 'c.jpg', out: 'o.png' })).toThrow(
      expect.objectContaining({ field: 'style', detail: 'is required' }),
    );
    expect(() => jobFromOptions({ ...base, iterations: '1e3' })).toThrow(expect.objectContaining({ field: 'iterations' }));
    expect(() => jobFromOptions({ ...base, iterations: [1, 2] })).toThrow(
      expect.objectContaining({ field: 'iterations', detail: 'expected one value, got a list' }),
    );
    expect(() => jobFromOptions({ ...base, pooling: 'min' })).toThrow(expect.objectContaining({ field: 'pooling' }));
    expect(() => jobFromOptions({ ...base, resume: 'yes' })).toThrow(expect.objectContaining({ field: 'resume' }));
  });

  it('describes each option once, with unique names', () => {
    const fields = JOB_OPTIONS.map((o) => o.field);
    expect(new Set(fields).size).toBe(fields.length);
    const shorts = JOB_OPTIONS.flatMap((o) => (o.short ? [o.short] : []));
    expect(new Set(shorts).size).toBe(shorts.length);
  });
});
