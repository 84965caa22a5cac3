import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCsv, readManifest } from '@nst/batch';

// Issue 21: a short row ran silently with defaults, and an unclosed quote made later jobs vanish from the results.
describe('CSV mistakes are errors naming the line', () => {
  it('refuses a row with fewer or more fields than the header', () => {
    expect(() => parseCsv('content,style,out,iterations\nc.jpg,s.jpg,o.png,7\nc.jpg,s.jpg,p.png\n')).toThrow(
      'line 3 has 3 fields, the header 4 (leave a cell empty for a default, but keep its comma)',
    );
    expect(() => parseCsv('a,b\n1,2,3\n')).toThrow(/^line 2 has 3 fields, the header 2$/);
    // A quoted newline does not end the row: the row is named by its first line.
    expect(() => parseCsv('a,b\n"x\ny"\n1,2')).toThrow(/^line 2 has 1 field, the header 2/);
    // Empty cells keep their commas and are fine; so are blank lines.
    expect(parseCsv('a,b,c\n,,\n\n1,,3')).toEqual([
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['', '', ''] },
      { line: 4, fields: ['1', '', '3'] },
    ]);
  });

  it('refuses a quote left open, naming the line it opens on, and text after a closing quote', () => {
    expect(() => parseCsv('content,style,out\nc.jpg,"s1.jpg,s2.jpg,o.png\nd.jpg,s.jpg,p.png\ne.jpg,s.jpg,q.png\n')).toThrow(
      /^line 2: a quoted field is not closed$/,
    );
    expect(() => parseCsv('a,b\n"say "hi"",x\n')).toThrow(/^line 2: text after a closing quote/);
    // Doubled quotes, and spaces after a closing quote, are fine.
    expect(parseCsv('a,b\n"say ""hi""" ,x\n"",""')).toEqual([
      { line: 1, fields: ['a', 'b'] },
      { line: 2, fields: ['say "hi"', 'x'] },
      { line: 3, fields: ['', ''] },
    ]);
  });

  it('refuses such a manifest before any job runs', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-csv-'));
    const write = (name: string, text: string) => {
      writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    await expect(
      readManifest(write('short.csv', 'content,style,out,iterations\nc.jpg,s.jpg,o.png,7\nc.jpg,s.jpg,p.png\n')),
    ).rejects.toThrow(/^line 3 has 3 fields, the header 4/);
    await expect(readManifest(write('open.csv', 'content,style,out\nc.jpg,"s.jpg,o.png\nd.jpg,s.jpg,p.png\n'))).rejects.toThrow(
      /^line 2: a quoted field is not closed$/,
    );
    expect(await readManifest(write('good.csv', 'content,style,out\nc.jpg,s.jpg,o.png\nd.jpg,"s.jpg,t.jpg",p.png\n'))).toHaveLength(2);
  });
});
