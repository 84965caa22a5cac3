import type { Command } from 'commander';
import { describeBackends } from '../backends.js';
import { videoStatus } from './video.js';

/** `nst backends` (main.ts names and describes the command), then what `nst video` needs (ffmpeg, the optical flow). */
export function defineBackendsCommand(command: Command): void {
  command.action(async () => {
    for (const line of await describeBackends({})) process.stdout.write(line + '\n');
    process.stdout.write('nst video needs:\n');
    for (const line of videoStatus()) process.stdout.write(`  ${line}\n`);
  });
}
