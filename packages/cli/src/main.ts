import { Command, CommanderError } from 'commander';
import { formatUserError, isUserError } from '@nst/core';
import { flagFor } from './flags.js';

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
  // One line, the suggestion included: "nst: unknown option '--iteratons' (Did you mean --iterations?)".
  .configureOutput({
    outputError: (text, write) =>
      write(
        text
          .trim()
          .split('\n')
          .join(' ')
          .replace(/^error: /, 'nst: ') + '\n',
      ),
  });

/**
 * The commands, each loaded only when it runs: a command's module imports
 * what it needs (sharp, the native addon, TensorFlow.js, BullMQ), and
 * `nst --version` or a mistyped command should not wait for any of it. The
 * others are listed by name and description, for help and suggestions.
 */
const COMMANDS: readonly { name: string; description: string; define: () => Promise<(command: Command) => void> }[] = [
  {
    name: 'render',
    description: 'optimise an image to keep the content of one photo in the style of one or more paintings',
    define: async () => (await import('./commands/render.js')).defineRenderCommand,
  },
  {
    name: 'plan',
    description: "print a render's memory plan (peak memory, tiling, largest untiled size, time per iteration) without rendering",
    define: async () => (await import('./commands/plan.js')).definePlanCommand,
  },
  {
    name: 'batch',
    description:
      'render every job of a manifest (JSON Lines or .csv, one job a line, keys as the render flags), packing compatible jobs into batches',
    define: async () => (await import('./commands/batch.js')).defineBatchCommand,
  },
  {
    name: 'video',
    description: 'stylise a video (a file or a folder of frames) frame by frame, with temporal consistency (optical flow, occlusions)',
    define: async () => (await import('./commands/video.js')).defineVideoCommand,
  },
  {
    name: 'serve',
    description: 'serve the HTTP API and the web page; jobs go to workers through Redis ($REDIS_URL)',
    define: async () => (await import('./commands/serve.js')).defineServeCommand,
  },
  {
    name: 'worker',
    description: 'render queued jobs (one worker per GPU; Redis at $REDIS_URL), batching compatible ones',
    define: async () => (await import('./commands/worker.js')).defineWorkerCommand,
  },
  {
    name: 'weights',
    description: 'obtain, import and inspect VGG-19 weights',
    define: async () => (await import('./commands/weights.js')).defineWeightsCommands,
  },
  {
    name: 'info',
    description: 'print the settings an image made by nst records (nst render --from IMAGE renders it again)',
    define: async () => (await import('./commands/info.js')).defineInfoCommand,
  },
  {
    name: 'backends',
    description: 'list the compute backends and whether each can run here',
    define: async () => (await import('./commands/backends.js')).defineBackendsCommand,
  },
];
const invoked = process.argv.slice(2).find((a) => !a.startsWith('-'));
for (const c of COMMANDS) {
  const command = program.command(c.name).description(c.description);
  if (c.name === invoked) (await c.define())(command);
}

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
