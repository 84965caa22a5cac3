import { Command, CommanderError } from 'commander';
import { formatUserError, isUserError } from '@nst/core';
import { flagFor } from './flags.js';
import { describeBackends } from './backends.js';
import { registerBatchCommand } from './commands/batch.js';
import { registerRenderCommand } from './commands/render.js';
import { registerServeCommand } from './commands/serve.js';
import { registerWorkerCommand } from './commands/worker.js';
import { registerWeightsCommands } from './commands/weights.js';

/**
 * `nst`: the command line. Every error the user can cause is one line on
 * stderr and a non-zero exit; stack traces only with --debug.
 */
// `nst render ... | head` closes stdout (and with 2>&1, stderr) early. The
// command goes on to its end (a render still writes its image; its exit status
// stays the command's own) and what it would have printed there is dropped: a
// reader that stopped reading must not cost the result.
let settled = false;
function survivePipeClose(stream: NodeJS.WriteStream): void {
  let closed = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || (closed && e.code === 'ERR_STREAM_DESTROYED')) {
      closed = true;
      return;
    }
    throw e;
  });
  const write = stream.write.bind(stream) as (...a: unknown[]) => boolean;
  stream.write = ((...args: unknown[]) => {
    if (!closed && !stream.destroyed) return write(...args);
    (args.find((a) => typeof a === 'function') as (() => void) | undefined)?.();
    return true;
  }) as typeof stream.write;
}
survivePipeClose(process.stdout);
survivePipeClose(process.stderr);

const program = new Command('nst')
  .description('Neural style transfer (Gatys et al. 2015) on a frozen VGG-19')
  .version('0.1.0')
  .option('--debug', 'print stack traces on errors')
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text.split('\n')[0].replace(/^error: /, 'nst: ') + '\n') });

registerRenderCommand(program);
registerBatchCommand(program);
registerServeCommand(program);
registerWorkerCommand(program);
registerWeightsCommands(program);
program
  .command('backends')
  .description('list the compute backends and whether each can run here')
  .action(async () => {
    for (const line of await describeBackends({})) process.stdout.write(line + '\n');
  });

// Holds the event loop open until the command settles. Node ends a process
// whose loop has drained even while its top-level await is pending (exit code
// 13, no output). That is how CI saw a TF.js wasm thread-pool start fail (a
// pool worker had exited, the others are unref'd so that a finished render
// exits): @nst/tfjs now detects that and falls back, and should anything else
// wait on an unref'd handle, the command waits instead of vanishing.
const keepAlive = setInterval(() => undefined, 2 ** 30);
// A library calling process.exit() mid-command must not pass for success.
process.on('exit', (code) => {
  if (settled || code !== 0) return;
  process.stderr.write('nst: internal error: the process was ended before the command finished\n');
  process.exitCode = 1;
});
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander already printed its one line (or help/version, exit code 0).
    process.exitCode = e.exitCode;
  } else {
    const debug = process.argv.includes('--debug');
    const message = e instanceof Error ? e.message : String(e);
    if (isUserError(e)) process.stderr.write(`nst: ${formatUserError(e, flagFor)}\n`);
    else process.stderr.write(`nst: internal error: ${message.split('\n')[0]}${debug ? '' : ' (run with --debug for details)'}\n`);
    if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exitCode = isUserError(e) ? 2 : 1;
  }
} finally {
  settled = true;
  clearInterval(keepAlive);
}
