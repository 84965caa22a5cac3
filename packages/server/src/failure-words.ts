import { formatUserError, isUserError, kebabCase, UserError } from '@nst/core';
import { UnrecoverableError } from 'bullmq';
import { withoutPaths } from './errors.js';

/**
 * The fields that can make a render's numbers run away or stand still (a
 * loss that is not finite, an image that does not move). The render blames
 * the learning rate; when the user left that alone but set one of these, it
 * is the one they can change.
 */
const RUNAWAY_SUSPECTS = ['lr', 'beta', 'alpha', 'tvWeight', 'styleLayers', 'contentLayers', 'styleScale'];

/**
 * A job's failure as its user should read it. Input errors fail the job at
 * once (UnrecoverableError) with the field at fault as the API names it,
 * and that field is one the user set where the render only guessed; other
 * errors are retried. The worker's own files never show: each local file is
 * named as the user named the upload (`names`: local path -> name), a kept
 * intermediate image is not offered (the user cannot reach it), and any other
 * path is replaced.
 *
 * `given` is the job's options as the user sent them (job field -> text).
 */
export function inUserWords(e: unknown, names: ReadonlyMap<string, string>, given: Readonly<Record<string, string>>): Error {
  const words = (message: string) => {
    let m = message.replace(/; the last finite image \(iteration (\d+)\) is in .*$/, '; the last finite image was at iteration $1');
    // Longest first: a job folder's files before the folder.
    for (const [file, name] of [...names].sort((a, b) => b[0].length - a[0].length)) m = m.split(file).join(name);
    return withoutPaths(m);
  };
  if (e instanceof UnrecoverableError) return new UnrecoverableError(words(e.message));
  if (isUserError(e)) return new UnrecoverableError(words(formatUserError(blameWhatWasSet(e, given), kebabCase)));
  return new Error(words(e instanceof Error ? e.message : String(e)));
}

/** `e`, naming a field the user set when the render named one they did not (see RUNAWAY_SUSPECTS). */
function blameWhatWasSet(e: UserError, given: Readonly<Record<string, string>>): UserError {
  if (e.code !== 'not-finite' || !e.field || e.field in given) return e;
  const set = RUNAWAY_SUSPECTS.find((f) => f in given);
  return set ? new UserError(e.detail, { code: e.code, field: set }) : e;
}
