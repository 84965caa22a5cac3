import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { camelCase, parseCsv, readManifest } from '@nst/batch';

describe('CSV', () => {
  it('reads quoted fields with commas, doubled quotes and newlines, and names each row by its first line', () => {
    const rows = parseCsv('a,b,c\r\n1,"x, y","say ""hi"""\n\n2,"two\nlines",\n3,,z');
    expect(rows).toEqual([
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['1', 'x, y', 'say "hi"'] },
      { line: 4, fields: ['2', 'two\nlines', ''] },
      { line: 6, fields: ['3', '', 'z'] },
    ]);
  });
});

describe('manifests', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-manifest-'));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('takes masks: paths against the manifest folder, none kept, in JSON lists and CSV cells; a wrong count names its line', async () => {
    const jsonl = write(
      'masks.jsonl',
      [
        JSON.stringify({
          content: 'a.jpg',
          style: ['s1.jpg', 's2.jpg'],
          'style-mask': ['masks/sky.png', 'none'],
          'style-region': 'r.png,-',
          'content-mask': 'masks/face.png',
          out: 'a.png',
        }),
        JSON.stringify({ content: 'b.jpg', style: ['s1.jpg', 's2.jpg'], 'style-mask': 'masks/sky.png', out: 'b.png' }),
      ].join('\n'),
    );
    const [one, two] = await readManifest(jsonl);
    expect(one.error).toBeUndefined();
    expect(one.config!.styleMask).toEqual([path.join(dir, 'masks/sky.png'), 'none']);
    expect(one.config!.styleRegion).toEqual([path.join(dir, 'r.png'), 'none']);
    expect(one.config!.contentMask).toBe(path.join(dir, 'masks/face.png'));
    expect(two.error).toMatchObject({ field: 'styleMask', detail: expect.stringMatching(/^1 style masks given for 2 style images/) });
    const csv = write('masks.csv', 'content,style,style-mask,out\nc.jpg,"s1.jpg,s2.jpg","none,m/rest.png",c.png\n');
    const [row] = await readManifest(csv);
    expect(row.error).toBeUndefined();
    expect(row.config!.styleMask).toEqual(['none', path.join(dir, 'm/rest.png')]);
  });

  it('maps kebab-case keys to job fields and resolves paths against the manifest folder', async () => {
    const file = write(
      'jobs.jsonl',
      [
        JSON.stringify({
          id: 'one',
          content: 'in/a.jpg',
          style: ['s1.jpg', 's2.jpg'],
          'style-blend-weights': [1, 3],
          out: 'out/a.png',
          size: '64x48',
          'style-layers': 'conv1_1,conv2_1',
          iterations: 12,
        }),
        '# a comment, then a blank line',
        '',
        JSON.stringify({ content: '/abs/b.jpg', style: 's1.jpg,s2.jpg', out: 'b.png', init: 'content' }),
      ].join('\n'),
    );
    const [one, two] = await readManifest(file);
    expect(one.error).toBeUndefined();
    expect(one.id).toBe('one');
    expect(one.config!.content).toEqual(path.join(dir, 'in/a.jpg'));
    expect(one.config!.style).toEqual([path.join(dir, 's1.jpg'), path.join(dir, 's2.jpg')]);
    expect(one.config!.styleBlendWeights).toEqual([1, 3]);
    expect(one.config!.out).toBe(path.join(dir, 'out/a.png'));
    expect(one.config!.size).toEqual({ kind: 'exact', width: 64, height: 48 });
    expect(one.config!.iterations).toBe(12);
    expect(one.config!.styleLayers.map((l) => l.layer)).toEqual(['conv1_1', 'conv2_1']);
    expect(two.id).toBe('line 4');
    expect(two.config!.content).toBe('/abs/b.jpg');
    expect(two.config!.style).toHaveLength(2);
    expect(two.config!.init).toBe('content');
  });

  it('turns a bad line into a failed job naming the key, and lets the others be', async () => {
    const good = { content: 'a.jpg', style: 's.jpg', out: 'a.png' };
    const file = write(
      'bad.jsonl',
      [
        JSON.stringify(good),
        'not json',
        JSON.stringify({ ...good, out: 'b.png', 'style-layers': 'conv9_9' }),
        JSON.stringify({ ...good, out: 'c.png', colour: 'red' }),
        JSON.stringify({ ...good, out: 'd.png', weights: 'random:1' }),
        JSON.stringify({ ...good, out: 'd2.png', resume: true }),
        JSON.stringify({ content: 'a.jpg', out: 'e.png' }),
        JSON.stringify({ ...good, id: 'x', out: 'f.png' }),
        JSON.stringify({ ...good, id: 'x', out: 'g.png' }),
      ].join('\n'),
    );
    const jobs = await readManifest(file);
    expect(jobs.map((j) => (j.error ? `${j.error.field ?? ''}|${j.error.message}` : 'ok'))).toEqual([
      'ok',
      expect.stringMatching(/^\|line 2 is not a JSON object/),
      expect.stringMatching(/^styleLayers\|/),
      "colour|colour: 'colour' is not a job option",
      'weights|weights: is set once for the whole batch (nst batch --weights), not per job',
      'resume|resume: is not a manifest key (nst batch always resumes a job that has a checkpoint)',
      'style|style: is required',
      'ok',
      "id|id: the id 'x' is used twice",
    ]);
  });

  it('reads CSV with a header row; empty cells take the defaults', async () => {
    const file = write(
      'jobs.csv',
      'content,style,out,iterations,style-layers\nc.jpg,"s1.jpg,s2.jpg",o.png,,conv1_1\nc.jpg,s1.jpg,p.png,7,\n',
    );
    const [a, b] = await readManifest(file);
    expect(a.config!.style).toEqual([path.join(dir, 's1.jpg'), path.join(dir, 's2.jpg')]);
    expect(a.config!.iterations).toBe(200);
    expect(b.config!.iterations).toBe(7);
    expect(b.config!.styleLayers).toHaveLength(5);
    expect(camelCase('style-blend-weights')).toBe('styleBlendWeights');
  });
});
