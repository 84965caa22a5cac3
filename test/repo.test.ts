import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitLsFiles, repoRoot } from '@nst/test-helpers';

describe('the repository', () => {
  it('holds only the third-party images and weights it may ship, each credited with its licence', () => {
    const files = gitLsFiles();
    expect(files.length).toBeGreaterThan(10);
    // An image may ship when a CREDITS.md beside it, or the README.md of its
    // folder or the one above, names it with its source and licence; the
    // built-in weights ship with their NOTICE. The photos without a stated
    // licence in ../shared never ship.
    const credited = (f: string) =>
      /\.(jpe?g|png|webp)$/i.test(f) &&
      [
        path.join(path.dirname(f), 'CREDITS.md'),
        path.join(path.dirname(f), 'README.md'),
        path.join(path.dirname(f), '..', 'README.md'),
      ].some((c) => {
        const credits = path.join(repoRoot, c);
        return existsSync(credits) && readFileSync(credits, 'utf8').includes(path.basename(f));
      });
    const weights = 'packages/weights/assets/vgg19-keras-blocks1-3.safetensors';
    const forbidden = files.filter(
      (f) => /\.(jpe?g|h5|hdf5|mat|pth|pt|safetensors|bin|npy|npz)$|shard\d+of\d+$/i.test(f) && !credited(f) && f !== weights,
    );
    expect(forbidden).toEqual([]);
    expect(files.filter((f) => /golden_gate|hoovertowernight/i.test(f))).toEqual([]);
    expect(files).toContain(weights);
    const notice = readFileSync(path.join(repoRoot, 'packages', 'weights', 'assets', 'NOTICE'), 'utf8');
    expect(notice).toMatch(/Simonyan and Andrew Zisserman/);
    expect(notice).toMatch(/\(CC BY 4\.0\)/);
    const examples = readFileSync(path.join(repoRoot, 'examples', 'README.md'), 'utf8');
    expect(examples).toMatch(/Andreas Praefcke .* \[CC BY 3\.0\]/);
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
