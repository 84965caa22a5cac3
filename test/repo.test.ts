import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitLsFiles, repoRoot } from './helpers.js';

describe('the repository', () => {
  it('holds only the third-party images and weights it may ship, each credited with its licence', () => {
    const files = gitLsFiles();
    expect(files.length).toBeGreaterThan(10);
    const shipped = files.filter((f) => /\.(jpe?g|png|webp|h5|hdf5|mat|pth|pt|safetensors|bin|npy|npz)$|shard\d+of\d+$/i.test(f));
    const images = ['tubingen', 'starry_night', 'the_scream', 'shipwreck'].map((n) => `examples/images/${n}.jpg`);
    const docs = ['content', 'style', 'result'].map((n) => `docs/example-${n}.jpg`);
    const weights = 'packages/weights/assets/vgg19-keras-blocks1-3.safetensors';
    expect(shipped.sort()).toEqual([...images, ...docs, weights].sort());
    // Each image is listed with its author and licence; the weights have their NOTICE.
    const credits = readFileSync(path.join(repoRoot, 'examples', 'README.md'), 'utf8');
    for (const f of [...images, ...docs]) expect(credits, f).toContain(`\`${f.replace(/^examples\//, '')}\``);
    expect(credits).toMatch(/Andreas Praefcke .* \[CC BY 3\.0\]/);
    const notice = readFileSync(path.join(repoRoot, 'packages', 'weights', 'assets', 'NOTICE'), 'utf8');
    expect(notice).toMatch(/Simonyan and Andrew Zisserman/);
    expect(notice).toMatch(/\(CC BY 4\.0\)/);
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
