import type { Command } from 'commander';
import { describeBackends } from '../backends.js';

/** `nst backends` (main.ts names and describes the command). */
export function defineBackendsCommand(command: Command): void {
  command.action(async () => {
    for (const line of await describeBackends({})) process.stdout.write(line + '\n');
  });
}
