/**
 * The set-up of the native engine, without touching the system: which
 * prerequisites are missing (NST_PRETEND_MISSING stands in for a removed
 * package), what the quick start then does (install with apt-get as root or
 * with password-less sudo, else name the command), the record a failed build
 * leaves, and the loader's message built from it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAddonFrom, readBuildFailure } from '@nst/native';
// @ts-expect-error: a plain ES module script, no type declarations
import * as prereq from '../scripts/prerequisites.mjs';

const scripts = fileURLToPath(new URL('../scripts/', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'nst-setup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const onednn = { what: 'oneDNN 2.x', apt: 'libdnnl-dev' };
const cmake = { what: 'CMake 3.18+', apt: 'cmake' };
const linux = { platform: 'linux', aptGet: true, root: false, sudo: false };

describe('what the quick start does about missing packages', () => {
  it('nothing, when nothing is missing', () => {
    expect(prereq.planSetup([], linux)).toEqual({ action: 'none' });
  });

  it('as root: apt-get update and install, after one line saying what and why', () => {
    const plan = prereq.planSetup([cmake, onednn], { ...linux, root: true });
    expect(plan.action).toBe('install');
    expect(plan.line).toBe(
      'setup: installing cmake libdnnl-dev with apt-get (CMake 3.18+, oneDNN 2.x: needed to build the native CPU engine)',
    );
    expect(plan.commands).toEqual([
      ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'update', '-qq'],
      ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'cmake', 'libdnnl-dev'],
    ]);
  });

  it('with password-less sudo: the same through sudo -n', () => {
    const plan = prereq.planSetup([onednn], { ...linux, sudo: true });
    expect(plan.commands.map((c: string[]) => c.slice(0, 2))).toEqual([
      ['sudo', '-n'],
      ['sudo', '-n'],
    ]);
  });

  it('unprivileged: the exact command to run, then the rebuild', () => {
    const plan = prereq.planSetup([onednn], linux);
    expect(plan.action).toBe('advise');
    expect(plan.line).toBe(
      'setup: the native CPU engine needs oneDNN 2.x: sudo apt-get install libdnnl-dev, then npm run build:native -w @nst/native',
    );
  });

  it('without apt-get: what is missing and how to get it', () => {
    const mac = prereq.planSetup([cmake, onednn], { platform: 'darwin', aptGet: false, root: false, sudo: false });
    expect(mac.action).toBe('advise');
    expect(mac.line).toMatch(
      /needs CMake 3\.18\+, oneDNN 2\.x: brew install cmake; install oneDNN 2\.x \(.*DNNLROOT.*\), then npm run build:native -w @nst\/native$/,
    );
    const other = prereq.planSetup([cmake], { platform: 'linux', aptGet: false, root: true, sudo: false });
    expect(other.line).toMatch(/install CMake 3\.18\+ with your package manager, then npm run build:native/);
  });

  it('NST_PRETEND_MISSING makes a present package count as missing; a dry run prints the commands', () => {
    const real = prereq.missingPrerequisites({});
    const pretend = prereq.missingPrerequisites({ NST_PRETEND_MISSING: 'libdnnl-dev' });
    expect(pretend).toContainEqual(onednn);
    expect(pretend.length).toBe(real.some((m: { apt: string }) => m.apt === 'libdnnl-dev') ? real.length : real.length + 1);
    const lines: string[] = [];
    const plan = prereq.planSetup([onednn], { ...linux, root: true });
    expect(prereq.runInstall(plan, { NST_SETUP_DRY_RUN: '1' }, (l: string) => lines.push(l))).toBe(true);
    expect(lines).toEqual([plan.line, ...plan.commands.map((c: string[]) => `setup: (dry run) ${c.join(' ')}`)]);
  });
});

describe('a failed build leaves its cause for the loader', () => {
  const out = path.join(dir, 'build');
  const build = (env: Record<string, string>) =>
    spawnSync(process.execPath, [path.join(scripts, 'build-addon.mjs'), '--out', out], {
      encoding: 'utf8',
      env: { ...process.env, CI: '', NST_REQUIRE_NATIVE: '', NST_PRETEND_MISSING: 'libdnnl-dev', ...env },
    });

  it('records the missing package and the fix; exits 0 for users, 1 under CI', () => {
    const user = build({});
    expect(user.status, user.stderr).toBe(0);
    expect(user.stderr).toMatch(/build failed: oneDNN 2\.x not found: .*libdnnl-dev.*, then npm run build:native -w @nst\/native/);
    const record = JSON.parse(readFileSync(path.join(out, 'BUILD-FAILED.json'), 'utf8'));
    expect(record.missing).toContainEqual(onednn);
    expect(build({ CI: 'true' }).status).toBe(1);
  });

  it('the loader names the root cause and the command', () => {
    const addon = path.join(out, 'Release', 'nst_native.node');
    expect(existsSync(addon)).toBe(false);
    expect(readBuildFailure(addon)?.missing).toContainEqual(onednn);
    const loaded = loadAddonFrom(addon);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.reason).toMatch(
      /^native addon not built: oneDNN 2\.x not found: .*libdnnl-dev.*, then npm run build:native -w @nst\/native$/,
    );
  });
});
