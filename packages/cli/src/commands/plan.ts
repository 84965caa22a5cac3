import type { Command } from 'commander';
import { renderCommand } from './render.js';

/**
 * `nst plan`: `nst render`'s flags and checks, then each job's memory plan
 * (the peak memory predicted, whether and how it tiles, the largest untiled
 * size, the time per iteration from a short run here) instead of a render:
 * the same as `nst render --dry-run`. main.ts names and describes the command.
 */
export function definePlanCommand(command: Command): void {
  renderCommand(command, true);
}
