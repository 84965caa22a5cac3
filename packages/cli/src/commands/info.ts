import type { Command } from 'commander';
import { UserError } from '@nst/core';
import { readResultSettings, type FileSettings } from '@nst/job';
import { flagFor } from '../flags.js';

/**
 * `nst info IMAGE` (main.ts names and describes the command): the settings
 * an image made by nst records (PNG text chunk or XMP), as lines or, with
 * --json, as recorded; and the command that renders it again.
 */
export function defineInfoCommand(command: Command): void {
  command
    .argument('<image>', 'an image nst made')
    .option('--json', 'print the recorded settings as JSON')
    .action(async (image: string, flags: { json?: boolean }) => {
      // Errors name the file, the command's only argument: no field.
      const settings = await readResultSettings(image, '');
      if (!settings) throw new UserError(`'${image}' records no nst settings (only images nst made do)`, { code: 'unsupported' });
      process.stdout.write(flags.json ? JSON.stringify(settings, null, 2) + '\n' : describeSettings(image, settings).join('\n') + '\n');
    });
}

/** The settings as lines: what the file is, how it was made, its inputs, every option, and the command that repeats it. */
export function describeSettings(image: string, s: FileSettings): string[] {
  const state =
    s.state === 'final'
      ? `the result of ${s.iteration} iterations`
      : s.state === 'partial'
        ? `an interrupted render, at iteration ${s.iteration} of ${s.iterations} (nst render --resume continues it)`
        : `a snapshot at iteration ${s.iteration} of ${s.iterations}`;
  const lines = [
    `${image}: ${state}, ${s.size}`,
    `made by: nst ${s.nst}${s.backend ? ` on ${s.backend}` : ''}`,
    `weights: ${s.weights.source} (${s.weights.format}${/^[0-9a-f]{64}$/.test(s.weights.identity) ? `, SHA-256 ${s.weights.identity}` : ''})`,
    ...s.inputs.map((i) => `${i.field}: ${i.file} (SHA-256 ${i.sha256})`),
  ];
  if (s.losses) lines.push(`loss: J ${s.losses.total} (content ${s.losses.content}, style ${s.losses.style}, tv ${s.losses.tv})`);
  // The input files are listed above, with their digests.
  const options = Object.entries(s.options).filter(([field]) => !s.inputs.some((i) => i.field === field));
  for (const [field, value] of options) lines.push(`${flagFor(field)} ${Array.isArray(value) ? value.join(',') : String(value)}`);
  lines.push(`fingerprint: ${s.fingerprint}`);
  lines.push(`again: nst render --from ${quote(image)} -o OUT`);
  return lines;
}

function quote(file: string): string {
  return /^[\w./-]+$/.test(file) ? file : `'${file.replace(/'/g, `'\\''`)}'`;
}
