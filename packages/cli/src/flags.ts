import type { Option } from 'commander';
import { kebabCase, UserError } from '@nst/core';

/** The CLI's name for a job field: its long option ('contentLayers' -> '--content-layers'). */
export function flagFor(field: string): string {
  return `--${kebabCase(field)}`;
}

/**
 * A single-valued option given twice must agree with itself: `--size 400x300
 * --size 800x600` is a mistake (which one did the user mean?), not a silent
 * override. The same value twice is harmless. Commander's `previous` cannot
 * tell a default from a first value, so the values seen are kept here.
 */
export function once(option: Option, field: string): Option {
  let seen: string | undefined;
  const choices = option.argChoices;
  return option.argParser((value: string) => {
    if (seen !== undefined && seen !== value)
      throw new UserError(`given twice with different values ('${seen}' and '${value}'): give it once`, { code: 'conflict', field });
    if (choices && !choices.includes(value)) throw new UserError(`'${value}' is not one of ${choices.join(', ')}`, { field });
    seen = value;
    return value;
  });
}
