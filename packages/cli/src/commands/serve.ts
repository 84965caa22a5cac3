import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '@nst/core';
import { parseCount } from '@nst/job';
import {
  checkToken,
  createApiServer,
  folderStore,
  openQueue,
  persistenceWarning,
  redisConnection,
  reportErrors,
  sweepTemporaryFiles,
  whenConnected,
} from '@nst/server';

interface ServeFlags {
  port: string;
  host: string;
  store: string;
  token?: string;
  tokenFile?: string;
}

const warn = (line: string) => process.stderr.write(`warning: ${line}\n`);

/**
 * The API's token: from --token-file or --token (which every local user can
 * read in `ps`, hence the warning), else from $NST_TOKEN.
 */
function readToken(flags: ServeFlags): string {
  if (flags.tokenFile !== undefined && flags.token !== undefined)
    throw new UserError('give --token-file or --token, not both', { code: 'conflict', field: 'token' });
  if (flags.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(flags.tokenFile, 'utf8');
    } catch (e) {
      throw new UserError(`cannot read '${flags.tokenFile}' (${(e as NodeJS.ErrnoException).code})`, {
        code: 'unreadable',
        field: 'token-file',
      });
    }
    if ((statSync(flags.tokenFile).mode & 0o077) !== 0) warn(`--token-file '${flags.tokenFile}' can be read by other users (chmod 600 it)`);
    return checkToken(text.trim(), 'tokenFile');
  }
  if (flags.token !== undefined) {
    warn('--token is visible to every user of this machine (ps); prefer --token-file or NST_TOKEN');
    return checkToken(flags.token, 'token');
  }
  const env = process.env.NST_TOKEN;
  if (env === undefined || env === '') throw new UserError('is required: give --token-file FILE or set NST_TOKEN', { field: 'token' });
  try {
    return checkToken(env);
  } catch (e) {
    throw new UserError(`NST_TOKEN: ${(e as UserError).detail}`);
  }
}

/** `nst serve`'s flags and action (main.ts names and describes the command). */
export function defineServeCommand(command: Command): void {
  command
    .option('--port <n>', 'TCP port', '8080')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .requiredOption('--store <dir>', 'the store folder the workers share (inputs, checkpoints, results)')
    .option('--token-file <file>', 'a file holding the bearer token every API request must carry (default: $NST_TOKEN)')
    .option('--token <secret>', 'the token itself (visible to every local user in ps: prefer --token-file or $NST_TOKEN)')
    .action(async (flags: ServeFlags) => {
      const token = readToken(flags);
      const port = parseCount(flags.port, 'port', 0, 65535);
      const connection = redisConnection();
      const queue = openQueue(connection);
      reportErrors(queue, (line) => process.stderr.write(`${line}\n`));
      try {
        await whenConnected(queue);
      } catch (e) {
        await queue.close().catch(() => undefined);
        throw e;
      }
      const persistence = await persistenceWarning(connection);
      if (persistence) warn(persistence);
      const swept = await sweepTemporaryFiles(flags.store).catch(() => 0);
      if (swept > 0) process.stderr.write(`removed ${swept} temporary files a killed writer left in the store\n`);
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
