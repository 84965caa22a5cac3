import type { Command } from 'commander';
import { UserError } from '@nst/core';
import { parseCount } from '@nst/job';
import { createApiServer, folderStore, openQueue, redisConnection, reportErrors, whenConnected } from '@nst/server';

interface ServeFlags {
  port: string;
  host: string;
  store: string;
  token?: string;
}

/** `nst serve`'s flags and action (main.ts names and describes the command). */
export function defineServeCommand(command: Command): void {
  command
    .option('--port <n>', 'TCP port', '8080')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .requiredOption('--store <dir>', 'the store folder the workers share (inputs, checkpoints, results)')
    .option('--token <secret>', 'the bearer token every API request must carry (default: $NST_TOKEN)')
    .action(async (flags: ServeFlags) => {
      const token = flags.token ?? process.env.NST_TOKEN;
      if (!token) throw new UserError('is required (or set NST_TOKEN)', { field: 'token' });
      const port = parseCount(flags.port, 'port', 0, 65535);
      const queue = openQueue(redisConnection());
      reportErrors(queue, (line) => process.stderr.write(`${line}\n`));
      try {
        await whenConnected(queue);
      } catch (e) {
        await queue.close().catch(() => undefined);
        throw e;
      }
      const server = createApiServer({ store: folderStore(flags.store), queue, token });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) =>
          reject(new UserError(`cannot listen on ${flags.host}:${port} (${e.code})`, { code: 'unsupported', field: 'port' })),
        );
        server.listen(port, flags.host, resolve);
      });
      const address = server.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      process.stdout.write(
        `listening on http://${flags.host}:${actual}/ (open http://${flags.host}:${actual}/#token=<token> in a browser)\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => server.close(() => resolve());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      server.closeAllConnections();
      await queue.close();
    });
}
