import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nst } from '@nst/test-helpers';
import { nstBin, startCli, startRedis, swatch, type Proc } from './helpers.js';

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

describe.skipIf(!ready && process.env.CI !== 'true')('a tokens file (nst serve --tokens)', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-tokens-'));
  const store = path.join(dir, 'store');
  const noRedis = { REDIS_URL: 'redis://127.0.0.1:1', NST_TOKEN: '' };

  it('refuses a bad file naming the line (never the token), and a second source of tokens', () => {
    const file = (name: string, text: string) => {
      const f = path.join(dir, name);
      writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    const cases: [string[], string][] = [
      [
        ['--tokens', file('short', 'ana ana-token-0123456789\nben short\n')],
        'nst: --tokens: line 2: the token is 5 characters; a token needs at least 16',
      ],
      [['--tokens', file('role', 'ana ana-token-0123456789 root\n')], "nst: --tokens: line 1: after the token only 'admin' may follow"],
      [
        ['--tokens', file('twice', 'ana ana-token-0123456789\nana ben-token-0123456789\n')],
        "nst: --tokens: line 2: the name 'ana' is given twice",
      ],
      [['--tokens', file('empty', '# nobody\n')], 'nst: --tokens: has no users'],
      [
        ['--tokens', file('ok', 'ana ana-token-0123456789\n'), '--token', 'x'.repeat(20)],
        'nst: --token: give --tokens or --token, not both',
      ],
      [
        ['--tokens', file('ok2', 'ana ana-token-0123456789\n'), '--keep-days', '0'],
        'nst: --keep-days: expected a positive number of days, got 0',
      ],
    ];
    for (const [args, message] of cases) {
      const r = nst(['serve', '--store', store, '--port', '0', ...args], noRedis);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toMatch(/ben-token|0123456789/);
    }
  });

  it("serves each user with their own token, an admin's metrics, and the pixel cap it is given", async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const tokens = path.join(dir, 'tokens');
    writeFileSync(tokens, '# the studio\nana ana-token-0123456789\nops ops-token-0123456789 admin\n', { mode: 0o600 });
    const p = startCli(
      ['serve', '--store', store, '--port', '0', '--tokens', tokens, '--max-pixels', '1200', '--keep-days', '7'],
      redis.url,
      {
        NST_TOKEN: '',
      },
    );
    procs.push(p);
    await p.waitFor(/listening on http:\/\/127\.0\.0\.1:\d+\//);
    const base = /listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(p.output())![1];
    const status = async (route: string, t: string) =>
      (await fetch(`${base}${route}`, { headers: { authorization: `Bearer ${t}` } })).status;
    expect(await status('/api/jobs', 'ana-token-0123456789')).toBe(200);
    expect(await status('/api/jobs', 'ben-token-0123456789')).toBe(401);
    expect(await status('/metrics', 'ana-token-0123456789')).toBe(403);
    expect(await status('/metrics', 'ops-token-0123456789')).toBe(200);
    const png = await swatch(1);
    const form = new FormData();
    form.append('content', png, 'a.png');
    form.append('style', png, 'b.png');
    form.append('size', '64x48');
    const r = await fetch(`${base}/api/jobs`, { method: 'POST', body: form, headers: { authorization: 'Bearer ana-token-0123456789' } });
    expect([r.status, await r.json()]).toEqual([413, { error: 'size: 64x48 is more than 1200 pixels', field: 'size' }]);
  });
});
