import { kebabCase } from '@nst/core';

/** The CLI's name for a job field: its long option ('contentLayers' -> '--content-layers'). */
export function flagFor(field: string): string {
  return `--${kebabCase(field)}`;
}
