import { UserError } from '@nst/core';
import { parseCount } from '@nst/job';

/*
 * The fields of a submission that belong to the service, not to the job:
 * how urgent it is and the caller's own reference. They change when and for
 * whom a job runs, never its picture, so they are not job options
 * (JOB_OPTIONS, which fingerprints, packing and checkpoints derive from) and
 * never reach the render. Described once here: the API parses them from
 * this table and the README's API table lists them.
 */

export interface ServiceFieldSpec<T> {
  readonly description: string;
  readonly default?: T;
  /** Parses the form field's text; errors name `field`. */
  readonly parse: (value: string, field: string) => T;
}

const isControl = (c: string) => c.charCodeAt(0) < 32 || c.charCodeAt(0) === 127;
/** `text` less its control characters (line breaks, escapes): what a user sent, safe to show back in one line. */
export const withoutControlCharacters = (text: string) => [...text].filter((c) => !isControl(c)).join('');

/** Priorities run from -PRIORITY_RANGE (last) to +PRIORITY_RANGE (first). */
export const PRIORITY_RANGE = 10;

export const SERVICE_FIELDS = {
  priority: {
    description: `-${PRIORITY_RANGE} .. ${PRIORITY_RANGE}: higher runs sooner (default 0); equal priorities run in order of submission`,
    default: 0,
    parse: (value: string, field: string) => {
      const negative = value.trim().startsWith('-');
      const magnitude = parseCount(negative ? value.trim().slice(1) : value, field, 0, PRIORITY_RANGE);
      return negative ? -magnitude : magnitude;
    },
  },
  'client-ref': {
    description: 'your own reference for the job (at most 200 characters), stored and returned with it',
    parse: (value: string, field: string) => {
      if (value.length > 200) throw new UserError(`is ${value.length} characters; at most 200`, { field });
      if (withoutControlCharacters(value) !== value) throw new UserError('has control characters', { field });
      return value;
    },
  },
} as const satisfies Record<string, ServiceFieldSpec<unknown>>;

export type ServiceFieldName = keyof typeof SERVICE_FIELDS;
export const isServiceField = (name: string): name is ServiceFieldName => name in SERVICE_FIELDS;

/** BullMQ's priority (1 runs first) for a service priority. Every job has one, so all wait in one ordered set. */
export const bullPriority = (priority: number) => PRIORITY_RANGE + 1 - priority;
