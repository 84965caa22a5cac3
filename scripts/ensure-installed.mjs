#!/usr/bin/env node
// Makes the two quick-start commands (`npm run example`, `npm test`) work on a
// fresh clone. First the system: what the native CPU engine needs to build
// (cmake, a C++ compiler, oneDNN) is installed with apt-get when this user may
// (root, or password-less sudo), after one line saying what and why;
// otherwise one line names the command to run. Then the dependencies (`npm
// ci`, which builds the native addon and the TypeScript packages) or the
// build alone, and the addon when the system became ready after it was last
// tried. npm hides the output of install scripts, so the addon's state is
// reported here, from the build's record (native/build/BUILD-FAILED.json).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setUpSystem } from '../packages/native/scripts/prerequisites.mjs';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(root, 'native', 'build', 'Release', 'nst_native.node');
const emulatedAddonPath = path.join(root, 'native', 'build-emulated', 'Release', 'nst_native.node');
const buildRecord = path.join(root, 'native', 'build', 'BUILD-FAILED.json');
const npm = (args) => execFileSync('npm', args, { cwd: root, stdio: 'inherit' });
const log = (line) => console.log(line);

/** Brings the clone up; returns the one line on the native engine when it is not available (else undefined). */
export function ensureInstalled() {
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: the quick-start script reads it, no turbo task does
  const skipNative = process.env.NST_SKIP_NATIVE === '1';
  const systemReady = skipNative || setUpSystem();
  if (!existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
    log('setup: installing dependencies: npm ci (first run only; builds the native addon and the TypeScript packages)');
    npm(['ci', '--no-audit', '--no-fund']);
  } else if (!existsSync(path.join(root, 'packages', 'cli', 'dist', 'main.js'))) {
    npm(['run', 'build']);
  }
  if (!skipNative && systemReady && !existsSync(addonPath)) {
    log('setup: building the native addon: npm run build:native -w @nst/native');
    npm(['run', 'build:native', '-w', '@nst/native']);
  } else if (!skipNative && systemReady) {
    // A pull or merge that changed the C++ leaves an addon older than its sources: rebuild (cmake redoes only what changed).
    const sources = newestSource();
    for (const [addon, script] of [
      [addonPath, 'build:native'],
      [emulatedAddonPath, 'build:native:emulated'],
    ])
      if (existsSync(addon) && statSync(addon).mtimeMs < sources) {
        log(`setup: the native sources changed since ${path.relative(root, addon)} was built: npm run ${script} -w @nst/native`);
        npm(['run', script, '-w', '@nst/native']);
      }
  }
  return skipNative ? undefined : reportAddon();
}

/** The newest modification time of the native sources (native/ but its build folders, and cmake/). */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!e.name.startsWith('build')) walk(p);
      } else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const dir of ['native', 'cmake']) if (existsSync(path.join(root, dir))) walk(path.join(root, dir));
  return newest;
}

/** One visible line when the addon is not there: its build's recorded cause and fix, and what runs instead. */
function reportAddon() {
  if (existsSync(addonPath)) return undefined;
  let cause = 'the native addon was not built';
  try {
    const r = JSON.parse(readFileSync(buildRecord, 'utf8'));
    if (typeof r.reason === 'string' && typeof r.fix === 'string') cause = `native addon not built: ${r.reason}: ${r.fix}`;
  } catch {
    // no record: the build never ran (NST_SKIP_NATIVE, or npm ci --ignore-scripts)
  }
  const line = `setup: ${cause}; going on with the slower tfjs backend`;
  log(line);
  return line;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    ensureInstalled();
  } catch (e) {
    // npm already printed its error; end with its status rather than a stack trace.
    console.error(`setup: failed: ${e.message.split('\n')[0]}`);
    process.exit(typeof e.status === 'number' && e.status !== 0 ? e.status : 1);
  }
}
