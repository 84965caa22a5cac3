import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '@nst/core';
import { parseCount, parseNumber } from '@nst/job';
import {
  checkToken,
  createApiServer,
  DEFAULT_API_LIMITS,
  expireStored,
  openQueue,
  openStore,
  parseTokensFile,
  persistenceWarning,
  redisConnection,
  reportErrors,
  whenConnected,
  type ApiUser,
} from '@nst/server';

interface ServeFlags {
  port: string;
  host: string;
  store: string;
  token?: string;
  tokenFile?: string;
  tokens?: string;
  keepDays?: string;
  maxPixels: string;
  maxQueued: string;
  maxVideoFrames: string;
  maxVideoSeconds: string;
  maxVideoPixels: string;
}

const warn = (line: string) => process.stderr.write(`warning: ${line}\n`);

/** A secret file's text; warns when others can read it. */
function readSecretFile(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field: flag });
  }
  if ((statSync(file).mode & 0o077) !== 0) warn(`--${flag} '${file}' can be read by other users (chmod 600 it)`);
  return text;
}

/**
 * The API's users: one per line of --tokens FILE, or one admin whose token
 * comes from --token-file or --token (which every local user can read in
 * `ps`, hence the warning), else from $NST_TOKEN.
 */
function readUsers(flags: ServeFlags): ApiUser[] {
  const given = [flags.tokens && '--tokens', flags.tokenFile && '--token-file', flags.token && '--token'].filter(Boolean);
  if (given.length > 1)
    throw new UserError(given.length === 2 ? `give ${given.join(' or ')}, not both` : 'give one of --tokens, --token-file and --token', {
      code: 'conflict',
      field: 'token',
    });
  if (flags.tokens !== undefined) return parseTokensFile(readSecretFile(flags.tokens, 'tokens'));
  return [{ name: 'admin', token: readToken(flags), admin: true }];
}

function readToken(flags: ServeFlags): string {
  if (flags.tokenFile !== undefined) return checkToken(readSecretFile(flags.tokenFile, 'token-file').trim(), 'tokenFile');
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
    .requiredOption(
      '--store <dir|s3://bucket/prefix>',
      'where the server and the workers keep inputs, checkpoints and results: a shared folder, or an S3 bucket',
    )
    .option('--tokens <file>', "one user a line, 'NAME TOKEN' or 'NAME TOKEN admin': each user sees only their own jobs, an admin all")
    .option('--token-file <file>', 'a file holding the one (admin) token every API request must carry (default: $NST_TOKEN)')
    .option('--token <secret>', 'the token itself (visible to every local user in ps: prefer --token-file or $NST_TOKEN)')
    .option(
      '--keep-days <n>',
      'remove finished jobs, their inputs and results after n days (default: keep the last 1000 jobs, files until removed)',
    )
    .option('--max-pixels <n>', 'the most pixels a job may render', String(1024 * 1024))
    .option('--max-queued <n>', 'the most jobs one user may have queued at once', '100')
    .option('--max-video-frames <n>', 'the most frames an uploaded video may have', String(DEFAULT_API_LIMITS.videoFrames))
    .option('--max-video-seconds <s>', 'the longest an uploaded video may be', String(DEFAULT_API_LIMITS.videoSeconds))
    .option('--max-video-pixels <n>', 'the most pixels a frame of an uploaded video may have', String(DEFAULT_API_LIMITS.videoPixels))
    .action(async (flags: ServeFlags) => {
      const users = readUsers(flags);
      const port = parseCount(flags.port, 'port', 0, 65535);
      const keepDays = flags.keepDays === undefined ? undefined : parseNumber(flags.keepDays, 'keepDays');
      if (keepDays !== undefined && !(keepDays > 0))
        throw new UserError(`expected a positive number of days, got ${keepDays}`, { field: 'keepDays' });
      const keepMs = keepDays === undefined ? undefined : Math.round(keepDays * 86_400_000);
      const limits = {
        outputPixels: parseCount(flags.maxPixels, 'maxPixels', 1),
        queuedPerUser: parseCount(flags.maxQueued, 'maxQueued', 1),
        videoFrames: parseCount(flags.maxVideoFrames, 'maxVideoFrames', 1),
        videoSeconds: parseCount(flags.maxVideoSeconds, 'maxVideoSeconds', 1),
        videoPixels: parseCount(flags.maxVideoPixels, 'maxVideoPixels', 1),
      };
      const { store, sweep } = openStore(flags.store);
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
      const swept = await sweep().catch(() => 0);
      if (swept > 0) process.stderr.write(`removed ${swept} temporary files a killed writer left in the store\n`);
      const server = createApiServer({ store, queue, users, limits, keepMs });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', (e: NodeJS.ErrnoException) =>
            reject(new UserError(`cannot listen on ${flags.host}:${port} (${e.code})`, { code: 'unsupported', field: 'port' })),
          );
          server.listen(port, flags.host, resolve);
        });
      } catch (e) {
        // Nothing may keep the process alive: a server that cannot listen exits with an error.
        await queue.close().catch(() => undefined);
        throw e;
      }
      const retention = keepMs === undefined ? undefined : expireEvery(store, keepMs);
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
      if (retention) clearInterval(retention);
      server.closeAllConnections();
      await queue.close();
    });
}

/** Expires stored files older than `keepMs` now and every hour (a failure is logged and tried again next time). */
function expireEvery(store: Parameters<typeof expireStored>[0], keepMs: number): NodeJS.Timeout {
  const run = () =>
    expireStored(store, keepMs).then(
      (n) => n > 0 && process.stderr.write(`retention: removed ${n} stored files older than the kept days\n`),
      (e: Error) => process.stderr.write(`retention: ${e.message}\n`),
    );
  void run();
  const timer = setInterval(run, 3_600_000);
  timer.unref();
  return timer;
}
