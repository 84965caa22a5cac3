import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, nstBin, repoRoot, startCli, startRedis, type Proc } from './helpers.js';

// Issue 23, deployment: the systemd units in deploy/ pass `systemd-analyze verify` (CI installs systemd),
// and `nst serve` exits with an error when its port is taken instead of running on without a socket.
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

describe.skipIf(!hasAnalyze && process.env.CI !== 'true')('the systemd units (needs systemd-analyze)', () => {
  it('pass systemd-analyze verify, with no warning', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-units-'));
    const units = readdirSync(path.join(repoRoot, 'deploy')).filter((f) => f.endsWith('.service'));
    expect(units.sort()).toEqual(['nst-serve.service', 'nst-worker@.service']);
    for (const unit of units) {
      // verify checks that the command exists: node where this machine has it (the units name /usr/bin/node).
      const text = readFileSync(path.join(repoRoot, 'deploy', unit), 'utf8').replaceAll('/usr/bin/node', process.execPath);
      writeFileSync(path.join(dir, unit), text);
    }
    // A template is verified through an instance of it.
    writeFileSync(path.join(dir, 'nst-worker@0.service'), readFileSync(path.join(dir, 'nst-worker@.service')));
    const r = spawnSync('systemd-analyze', ['verify', 'nst-serve.service', 'nst-worker@0.service'], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.trim()).toBe('');
  });
});

describe.skipIf(!existsSync(nstBin) && process.env.CI !== 'true')('nst serve on a taken port', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
  });

  it('exits with status 2 and one line naming the port', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const port = await freePort();
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    try {
      const serve = startCli(['serve', '--port', String(port), '--store', mkdtempSync(path.join(tmpdir(), 'nst-port-'))], redis.url, {
        NST_TOKEN: 'port-taken-token-0123',
      });
      procs.push(serve);
      const code = await new Promise<number | null>((resolve) => serve.child.once('exit', (c) => resolve(c)));
      expect(code).toBe(2);
      expect(serve.output()).toContain(`nst: --port: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
    } finally {
      holder.close();
    }
  }, 30_000);
});
