import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nst } from '@nst/test-helpers';
import { nstBin, startCli, startRedis, type Proc } from './helpers.js';

// Issue 21: a --token on the command line is visible in `ps` to every local user; short tokens were taken.
const ready = existsSync(nstBin);

describe.skipIf(!ready && process.env.CI !== 'true')('the API token', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-token-'));
  const store = path.join(dir, 'store');
  // Nothing listens there: a refused token must be refused before Redis is asked.
  const noRedis = { REDIS_URL: 'redis://127.0.0.1:1', NST_TOKEN: '' };

  it('refuses a token shorter than 16 characters, wherever it comes from, and a missing one', () => {
    const shortFile = path.join(dir, 'short');
    writeFileSync(shortFile, 'abc\n', { mode: 0o600 });
    const cases: [string[], Record<string, string>, string][] = [
      [
        ['--token', 'fifteen-chars!!'],
        {},
        'nst: --token: is 15 characters; a token needs at least 16 (make one with: openssl rand -hex 24)',
      ],
      [['--token-file', shortFile], {}, 'nst: --token-file: is 3 characters; a token needs at least 16'],
      [[], { NST_TOKEN: 'short' }, 'nst: NST_TOKEN: is 5 characters; a token needs at least 16'],
      [[], {}, 'nst: --token: is required: give --token-file FILE or set NST_TOKEN'],
      [['--token-file', path.join(dir, 'none')], {}, `nst: --token-file: cannot read '${path.join(dir, 'none')}' (ENOENT)`],
      [['--token-file', shortFile, '--token', 'x'.repeat(20)], {}, 'nst: --token: give --token-file or --token, not both'],
    ];
    for (const [args, env, message] of cases) {
      const r = nst(['serve', '--store', store, '--port', '0', ...args], { ...noRedis, ...env });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toContain('redis');
    }
  });

  it('takes the token from --token-file (not in ps) or NST_TOKEN, and warns about --token and a file others can read', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const token = 'a-token-from-a-file-0123456789';
    const file = path.join(dir, 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const start = async (args: string[], env: Record<string, string> = {}) => {
      const p = startCli(['serve', '--store', store, '--port', '0', ...args], redis.url, { NST_TOKEN: '', ...env });
      procs.push(p);
      await p.waitFor(/listening on http:\/\/127\.0\.0\.1:\d+\//);
      const base = /listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(p.output())![1];
      const status = async (t: string) => (await fetch(`${base}/api/jobs`, { headers: { authorization: `Bearer ${t}` } })).status;
      return { p, status };
    };

    const fromFile = await start(['--token-file', file]);
    expect(await fromFile.status(token)).toBe(200);
    expect(await fromFile.status(`${token}x`)).toBe(401);
    expect(readFileSync(`/proc/${fromFile.p.child.pid}/cmdline`, 'utf8')).not.toContain(token);
    expect(fromFile.p.output()).not.toContain('warning: --token');

    chmodSync(file, 0o644);
    const readable = await start(['--token-file', file]);
    expect(readable.p.output()).toContain(`warning: --token-file '${file}' can be read by other users (chmod 600 it)`);

    const fromEnv = await start([], { NST_TOKEN: token });
    expect(await fromEnv.status(token)).toBe(200);

    const onCommandLine = await start(['--token', token]);
    expect(await onCommandLine.status(token)).toBe(200);
    expect(onCommandLine.p.output()).toContain(
      'warning: --token is visible to every user of this machine (ps); prefer --token-file or NST_TOKEN',
    );
  });
});
