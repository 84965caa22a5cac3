/**
 * The user's files are never lost: outputs that lead to an input are refused
 * (same path, symbolic link, hard link, an intermediate save's name, the
 * checkpoint), temporary files of killed writers are cleaned up (only theirs),
 * and outputs that cannot be written are refused before any work.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { removeStaleTemporaries } from '@nst/files';
import { assertWritable, partialPath, refuseOverwritingInputs, type JobInput } from '@nst/job';

const fresh = () => mkdtempSync(path.join(tmpdir(), 'nst-files-'));

describe('outputs against inputs', () => {
  const setup = () => {
    const dir = fresh();
    const content = path.join(dir, 'content.png');
    const style = path.join(dir, 'style.png');
    const weights = path.join(dir, 'w');
    mkdirSync(weights);
    for (const f of [content, style, path.join(weights, 'model.json')]) writeFileSync(f, 'x');
    const inputs: JobInput[] = [
      { file: content, field: 'content', what: 'content image' },
      { file: style, field: 'style', what: 'style image' },
      { file: path.join(weights, 'model.json'), field: 'weights', what: 'weights' },
    ];
    return { dir, content, style, weights, inputs };
  };
  const outputs = (out: string, every = 0, iterations = 100) => ({
    final: out,
    partial: partialPath(out),
    checkpoint: `${out}.ckpt`,
    intermediate: { every, iterations },
  });

  it('refuses the input itself, also through another spelling of its path', async () => {
    const { dir, content, inputs } = setup();
    await expect(refuseOverwritingInputs(inputs, outputs(content))).rejects.toThrow(/^out: .*would overwrite the content image/);
    const relative = path.relative(process.cwd(), path.join(dir, '.', 'sub', '..', 'content.png'));
    await expect(refuseOverwritingInputs(inputs, outputs(relative))).rejects.toThrow(/would overwrite the content image/);
  });

  it('refuses a symbolic link and a hard link to an input', async () => {
    const { dir, style, inputs } = setup();
    const soft = path.join(dir, 'soft.png');
    const hard = path.join(dir, 'hard.png');
    symlinkSync(style, soft);
    linkSync(style, hard);
    await expect(refuseOverwritingInputs(inputs, outputs(soft))).rejects.toThrow(/would overwrite the style image .*both lead to/);
    await expect(refuseOverwritingInputs(inputs, outputs(hard))).rejects.toThrow(/would overwrite the style image .*\(a hard link to it\)/);
    // An input given through a link to the output's folder is caught too.
    const linkedDir = path.join(dir, 'linked');
    symlinkSync(dir, linkedDir);
    await expect(refuseOverwritingInputs(inputs, outputs(path.join(linkedDir, 'content.png')))).rejects.toThrow(/content image/);
  });

  it('refuses a checkpoint path or a weight file as output', async () => {
    const { dir, weights, inputs } = setup();
    await expect(refuseOverwritingInputs(inputs, outputs(path.join(weights, 'model.json')))).rejects.toThrow(/would overwrite the weights/);
    // <out>.ckpt would be the content image
    const ck = { ...outputs(path.join(dir, 'x.png')), checkpoint: path.join(dir, 'content.png') };
    await expect(refuseOverwritingInputs(inputs, ck)).rejects.toThrow(/would overwrite the content image/);
    // So would the image an interrupted run leaves beside its output: <stem>.partial<ext>.
    const partial = path.join(dir, 'y.partial.png');
    writeFileSync(partial, 'mine');
    const withPartial: JobInput[] = [...inputs, { file: partial, field: 'init', what: 'init image' }];
    await expect(refuseOverwritingInputs(withPartial, outputs(path.join(dir, 'y.png')))).rejects.toThrow(
      /y\.partial\.png' would overwrite the init image/,
    );
    await expect(refuseOverwritingInputs(withPartial, outputs(path.join(dir, 'z.png')))).resolves.toBeUndefined();
  });

  it('refuses an intermediate save that would land on an input (its name, or a hard link), only when the schedule writes it', async () => {
    const { dir, style, inputs } = setup();
    const out = path.join(dir, 'result.png');
    const saved = path.join(dir, 'result_40.png');
    writeFileSync(saved, 'mine');
    const withSaved: JobInput[] = [...inputs, { file: saved, field: 'init', what: 'init image' }];
    await expect(refuseOverwritingInputs(withSaved, outputs(out, 20, 100))).rejects.toThrow(
      /intermediate save would overwrite the init image/,
    );
    await expect(refuseOverwritingInputs(withSaved, outputs(out, 30, 100))).resolves.toBeUndefined(); // 40 is not a multiple of 30
    await expect(refuseOverwritingInputs(withSaved, outputs(out, 20, 39))).resolves.toBeUndefined(); // the run ends before 40
    linkSync(style, path.join(dir, 'result_60.png'));
    await expect(refuseOverwritingInputs(inputs, outputs(out, 20, 100))).rejects.toThrow(/result_60\.png' would overwrite the style image/);
    await expect(refuseOverwritingInputs(inputs, outputs(path.join(dir, 'other.png'), 20, 100))).resolves.toBeUndefined();
  });
});

describe('temporary files of killed writers', () => {
  it('removes those of dead processes for this output only', async () => {
    const dir = fresh();
    // A pid that is certainly dead: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
    const names = {
      deadOut: `.out.png.${dead}.0a1b2c3d.tmp.png`,
      deadSave: `.out_20.png.${dead}.0a1b2c3d.tmp.png`,
      liveOut: `.out.png.${process.pid}.0a1b2c3d.tmp.png`,
      otherOutput: `.other.png.${dead}.0a1b2c3d.tmp.png`,
      notOurs: `.out.png.${dead}.notours.tmp.png`,
      userFile: 'out.png.tmp',
    };
    for (const n of Object.values(names)) writeFileSync(path.join(dir, n), 'x');
    mkdirSync(path.join(dir, `.out.png.${dead}.deadbeef.tmp.png`)); // a folder of that name is not ours
    const removed = await removeStaleTemporaries(dir, (name) => name === 'out.png' || /^out_\d+\.png$/.test(name));
    expect(removed.map((f) => path.basename(f)).sort()).toEqual([names.deadOut, names.deadSave].sort());
    for (const n of [names.liveOut, names.otherOutput, names.notOurs, names.userFile]) expect(existsSync(path.join(dir, n))).toBe(true);
    expect(existsSync(path.join(dir, `.out.png.${dead}.deadbeef.tmp.png`))).toBe(true);
  });
});

describe('unwritable outputs', () => {
  it('refuses, with one line naming the path, what cannot be written', async () => {
    const dir = fresh();
    await expect(assertWritable(path.join(dir, 'out.png/'), 'out')).rejects.toThrow(/^out: '.*out\.png\/' ends with a slash/);
    await expect(assertWritable('/proc/self/nst-out.png', 'out')).rejects.toThrow(/^out: cannot write into folder '\/proc\/self'/);
    mkdirSync(path.join(dir, 'folder.png'));
    await expect(assertWritable(path.join(dir, 'folder.png'), 'out')).rejects.toThrow(/is a folder/);
    await expect(assertWritable(path.join(dir, 'missing', 'out.png'), 'out')).rejects.toThrow(/does not exist/);
    writeFileSync(path.join(dir, 'file'), 'x');
    await expect(assertWritable(path.join(dir, 'file', 'out.png'), 'out')).rejects.toThrow(
      /a part of its folder path is a file|is not a folder/,
    );
    symlinkSync('/dev/null', path.join(dir, 'null.png'));
    await expect(assertWritable(path.join(dir, 'null.png'), 'out')).rejects.toThrow(/not a regular file/);
    await expect(assertWritable(path.join(dir, 'fine.png'), 'out')).resolves.toBeUndefined();
    expect(readFileSync(path.join(dir, 'file'), 'utf8')).toBe('x');
  });
});
