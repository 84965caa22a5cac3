import path from 'node:path';
import { Option, type Command } from 'commander';
import { formatLayers } from '@nst/core';
import { JOB_OPTIONS, namesFile, type JobConfig, type JobOptionValues, type OptionSpec } from '@nst/job';
import { EMBEDDED_SOURCE, loadWeights, resolveDefaultWeights } from '@nst/weights';
import { flagFor, once } from './flags.js';

/**
 * A commander option for one job option: `--` + the kebab-case field, as
 * flagFor() names it in errors. Defaults stay in jobFromOptions (one place
 * for every front end); the help text shows them (`helpDefault` instead
 * where the default depends on the weights in use). Nothing is mandatory
 * here: jobFromOptions says what is missing, after commander has had its
 * say on unknown flags (with its "did you mean").
 */
export function jobFlag(field: keyof JobConfig, o: OptionSpec<unknown>, helpDefault = o.default): Option {
  // Repeatable options take several values after one flag too (`-c photos/*.jpg`).
  const flags = `${o.short ? `-${o.short}, ` : ''}${flagFor(field)}${o.value ? ` <${o.value}${o.repeatable ? '...' : ''}>` : ''}`;
  let option = new Option(flags, helpDefault === undefined || !o.value ? o.description : `${o.description} (default: ${helpDefault})`);
  if (o.choices) option.choices(o.choices as string[]);
  if (!o.repeatable && o.value) option = once(option, field);
  return option;
}

/** Adds the flags of `fields` to `command` (help defaults: `helpDefaults`, else the table's). */
export function addJobFlags(
  command: Command,
  fields: readonly (keyof JobConfig)[],
  helpDefaults: Partial<Record<keyof JobConfig, string>> = {},
): Command {
  for (const field of fields) command.addOption(jobFlag(field, JOB_OPTIONS[field], helpDefaults[field] ?? JOB_OPTIONS[field].default));
  return command;
}

/**
 * The job option values given as flags (undefined: not given), by field.
 * `absolute`: paths resolved against the working folder, for front ends
 * that resolve other paths against another folder (a manifest's).
 */
export function jobValuesOf(
  flags: Readonly<Record<string, unknown>>,
  fields: readonly (keyof JobConfig)[],
  absolute = false,
): Record<string, JobOptionValues[string]> {
  const values: Record<string, JobOptionValues[string]> = {};
  for (const field of fields) {
    let v = flags[field] as JobOptionValues[string];
    // What names no file (init's kinds, a mask list's none) stays as given.
    const resolve = (p: unknown) => (namesFile(field, String(p)) ? path.resolve(String(p)) : String(p));
    if (absolute && v !== undefined && JOB_OPTIONS[field].paths) v = Array.isArray(v) ? v.map(resolve) : resolve(v);
    values[field] = v;
  }
  return values;
}

/**
 * For `--help` only (nothing is read otherwise): the loss layers' defaults
 * as the weights a render would use here have them, so that the help shows
 * what would run. Only the built-in set (9 MB) is read for this; a full set
 * has the notebook's layers (the table's defaults) unless it says otherwise.
 */
export async function helpDefaultsHere(argv = process.argv): Promise<Partial<Record<keyof JobConfig, string>>> {
  if (!argv.includes('--help') && !argv.includes('-h')) return {};
  try {
    const flag = argv.findIndex((a) => a === '-w' || a === '--weights');
    const source = (flag >= 0 ? argv[flag + 1] : undefined) ?? (await resolveDefaultWeights()) ?? EMBEDDED_SOURCE;
    if (source !== EMBEDDED_SOURCE) return {};
    const own = (await loadWeights(EMBEDDED_SOURCE)).defaultLayers;
    if (!own) return {};
    const note = ", the built-in blocks 1-3's own: no full VGG-19 is installed";
    return { contentLayers: `${formatLayers(own.contentLayers)}${note}`, styleLayers: `${formatLayers(own.styleLayers)}${note}` };
  } catch {
    // The help shows the table's defaults rather than fail.
    return {};
  }
}
