import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitLsFiles, repoRoot } from '@nst/test-helpers';

describe('the repository', () => {
  it('holds no third-party images or weights', () => {
    const files = gitLsFiles();
    expect(files.length).toBeGreaterThan(10);
    // An image may ship when a CREDITS.md beside it names it (source and licence).
    const credited = (f: string) => {
      const credits = path.join(repoRoot, path.dirname(f), 'CREDITS.md');
      return existsSync(credits) && readFileSync(credits, 'utf8').includes(path.basename(f)) && /\.(jpe?g|png|webp)$/i.test(f);
    };
    const forbidden = files.filter((f) => /\.(jpe?g|h5|hdf5|mat|pth|pt|safetensors|bin|npy|npz)$|shard\d+of\d+$/i.test(f) && !credited(f));
    expect(forbidden).toEqual([]);
  });

  it("keeps the README's two quick-start commands", () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const quick = readme.split('## Quick start')[1]?.split('\n## ')[0] ?? '';
    const commands = [...quick.matchAll(/^```(?:sh|bash)\n([\s\S]*?)```/gm)].map((m) => m[1].trim());
    expect(commands).toEqual(['npm run example', 'npm test']);
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    expect(pkg.scripts.example).toBeDefined();
    expect(pkg.scripts.test).toBeDefined();
  });
});
