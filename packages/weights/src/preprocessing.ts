import { PREPROCESSING, UserError, type Preprocessing } from '@nst/core';

/** Names accepted by --preprocessing. */
export const PREPROCESSING_CHOICES: readonly string[] = Object.values(PREPROCESSING).map((p) => p.name);

export function preprocessingByName(name: string): Preprocessing {
  const p = Object.values(PREPROCESSING).find((x) => x.name === name);
  if (!p) throw new UserError(`--preprocessing ${name}: unknown (choose one of ${PREPROCESSING_CHOICES.join(', ')})`);
  return p;
}
