/** Real processes for the server tests: a redis-server on a free port, `nst serve` and `nst worker`, all on 127.0.0.1. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { createApiServer, openQueue, redisConnection, type RenderQueue } from '@nst/server';
import { nstBin, repoRoot } from '@nst/test-helpers';

export { nstBin, repoRoot } from '@nst/test-helpers';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A running process whose output is kept, and a way to wait for a line of it. */
export interface Proc {
  readonly child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Ends it (SIGTERM, then SIGKILL after 5 s) and resolves when it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function startProcess(command: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(command, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (c: Buffer) => {
    out += c.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(`timed out waiting for ${pattern} from ${path.basename(command)} ${args[1] ?? ''}; output:\n${out.slice(-2000)}`),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A fresh redis-server on a free port (or `port`) with no persistence, unless `args` say otherwise. */
export async function startRedis(args: string[] = [], port?: number): Promise<{ url: string; port: number; proc: Proc }> {
  const p = port ?? (await freePort());
  const proc = startProcess('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args]);
  await proc.waitFor(/Ready to accept connections/, 10_000);
  return { url: `redis://127.0.0.1:${p}`, port: p, proc };
}

/** A token long enough for `nst serve`. */
export const serveToken = 'hostile-inputs-test-token';

/** `nst serve` on a free port of 127.0.0.1 with the token from NST_TOKEN; resolves once it listens. */
export async function startServe(
  redisUrl: string,
  store: string,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; base: string; pid: number }> {
  const proc = startCli(['serve', '--port', '0', '--store', store], redisUrl, { NST_TOKEN: serveToken, ...env });
  await proc.waitFor(/listening on http:\/\/127\.0\.0\.1:\d+\//);
  const port = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(proc.output())![1];
  return { proc, base: `http://127.0.0.1:${port}`, pid: proc.child.pid! };
}

/** A process's resident memory in MiB (Linux). */
export function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

export function startCli(args: string[], redisUrl: string, env: Record<string, string> = {}): Proc {
  return startProcess(process.execPath, [nstBin, ...args], { ...env, REDIS_URL: redisUrl });
}

/** Submits a job through the API; returns the response's status and JSON. */
export async function submitJob(
  base: string,
  token: string | undefined,
  files: Record<string, Blob | Blob[]>,
  fields: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new FormData();
  for (const [name, blob] of Object.entries(files))
    for (const b of Array.isArray(blob) ? blob : [blob]) form.append(name, b, `${name}.img`);
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  const res = await fetch(`${base}/api/jobs`, { method: 'POST', body: form, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export const getJson = (url: string, token: string) => call('GET', url, token);

/** Polls (every `everyMs`) until `done` returns true or the time is up. */
export async function until(done: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 250): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether this process may mount file systems (a tmpfs, a read-only bind mount): root, outside a restricted container. */
export const canMount = (() => {
  const probe = mkdtempSync(path.join(tmpdir(), 'nst-mount-probe-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]);
  if (r.status === 0) spawnSync('umount', [probe]);
  rmSync(probe, { recursive: true, force: true });
  return r.status === 0;
})();

/** A real S3-protocol server (s3rver, its own process) on a free port of 127.0.0.1, with one bucket; `env` lets a client reach it. */
export async function startS3(bucket = 'nst'): Promise<{ url: string; env: Record<string, string>; proc: Proc; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-s3rver-'));
  const bin = fileURLToPath(import.meta.resolve('s3rver/bin/s3rver.js'));
  const proc = startProcess(process.execPath, [
    bin,
    '-d',
    dir,
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '--silent',
    '--configure-bucket',
    bucket,
  ]);
  await proc.waitFor(/S3rver listening on/, 15_000);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    dir,
    proc,
    env: {
      AWS_ENDPOINT_URL: url,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  };
}

/** An S3 client of the test's own for the server startS3 made (or any endpoint), with s3rver's credentials or others. */
export function s3Client(endpoint: string, key = 'S3RVER'): S3Client {
  return new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: key, secretAccessKey: key },
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2000, requestTimeout: 5000 },
  });
}

/** The HTTP API in this process on a free port of 127.0.0.1, with its queue; `close` ends both. */
export async function startApi(
  redisUrl: string,
  options: Omit<Parameters<typeof createApiServer>[0], 'queue'>,
): Promise<{ base: string; queue: RenderQueue; close(): Promise<void> }> {
  const queue = openQueue(redisConnection(redisUrl));
  const server = createApiServer({ ...options, queue });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    queue,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await queue.close();
    },
  };
}

/** Sends `method` to an API route with the token; returns the status and JSON body. */
export async function call(method: string, url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A small flat-coloured PNG, different for each seed. */
export async function swatch(seed: number, width = 40, height = 30): Promise<Blob> {
  const png = await sharp({
    create: { width, height, channels: 3, background: { r: (70 * seed) % 256, g: 200 - ((30 * seed) % 200), b: 90 } },
  })
    .png()
    .toBuffer();
  return new Blob([png]);
}
