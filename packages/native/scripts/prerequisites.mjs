// What building the native CPU engine needs from the system, how to tell
// whether it is there, and what to do when it is not: install it with apt-get
// (root, or password-less sudo), or tell the user the one command to run.
// Used by the root quick-start scripts (scripts/ensure-installed.mjs), by CI
// (.ci/run) and by the addon build (scripts/build-addon.mjs), which records
// the missing packages in native/build/BUILD-FAILED.json for the loader.
//
// NST_PRETEND_MISSING=cmake,libdnnl-dev makes the check report those packages
// as missing (to try the set-up logic on a machine that has them), and
// NST_SETUP_DRY_RUN=1 prints the install command instead of running it.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The command that rebuilds the addon once the prerequisites are there. */
export const REBUILD_COMMAND = 'npm run build:native -w @nst/native';

/**
 * Each prerequisite: what it is, the Debian/Ubuntu package that provides it,
 * and a check that looks for the thing itself (so a compiler or oneDNN
 * installed another way counts too). OpenBLAS is not among them: nothing links it.
 */
export const PREREQUISITES = [
  { what: 'CMake 3.18+', apt: 'cmake', present: () => cmakeVersionAtLeast(3, 18) },
  { what: 'a C++17 compiler with OpenMP', apt: 'g++', present: () => onPath('g++') || onPath('c++') },
  { what: 'make', apt: 'make', present: () => onPath('make') || onPath('ninja') },
  { what: 'oneDNN 2.x', apt: 'libdnnl-dev', present: () => onednnMajor() === 2 },
];

/** The prerequisites that are missing here (NST_PRETEND_MISSING adds some by package name). */
export function missingPrerequisites(env = process.env) {
  const pretend = new Set(
    (env.NST_PRETEND_MISSING ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
  return PREREQUISITES.filter((p) => pretend.has(p.apt) || !p.present()).map(({ what, apt }) => ({ what, apt }));
}

/** The facts about this machine that decide how prerequisites can be installed. */
export function systemFacts() {
  const aptGet = onPath('apt-get');
  const root = process.getuid?.() === 0;
  return {
    platform: process.platform,
    aptGet,
    root,
    // sudo -n fails at once instead of asking for a password.
    sudo: !root && aptGet && onPath('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0,
  };
}

/**
 * What to do about `missing` on a machine with `facts`: nothing; install
 * (the command, as an argv list, with the line that says what and why); or
 * advise (the line telling the user what is missing and how to get it).
 */
export function planSetup(missing, facts) {
  if (missing.length === 0) return { action: 'none' };
  const packages = missing.map((m) => m.apt);
  const what = missing.map((m) => m.what).join(', ');
  if (facts.aptGet && (facts.root || facts.sudo)) {
    const prefix = facts.root ? [] : ['sudo', '-n'];
    const env = ['env', 'DEBIAN_FRONTEND=noninteractive'];
    return {
      action: 'install',
      packages,
      line: `setup: installing ${packages.join(' ')} with apt-get (${what}: needed to build the native CPU engine)`,
      commands: [
        [...prefix, ...env, 'apt-get', 'update', '-qq'],
        [...prefix, ...env, 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages],
      ],
    };
  }
  return {
    action: 'advise',
    packages,
    fix: fixCommand(missing, facts),
    line: `setup: the native CPU engine needs ${what}: ${fixCommand(missing, facts)}`,
  };
}

/** The one command (or instruction) that gets `missing` on this kind of machine, then `rebuild`. */
export function fixCommand(missing, facts = systemFacts(), rebuild = REBUILD_COMMAND) {
  const packages = missing.map((m) => m.apt);
  if (facts.aptGet) return `${facts.root ? '' : 'sudo '}apt-get install ${packages.join(' ')}, then ${rebuild}`;
  const needsOnednn = packages.includes('libdnnl-dev');
  const others = missing.filter((m) => m.apt !== 'libdnnl-dev').map((m) => m.what);
  const parts = [];
  if (facts.platform === 'darwin') {
    const brew = [...(packages.includes('cmake') ? ['cmake'] : []), ...(packages.includes('g++') ? ['libomp'] : [])];
    if (brew.length > 0) parts.push(`brew install ${brew.join(' ')}`);
  } else if (others.length > 0) parts.push(`install ${others.join(', ')} with your package manager`);
  if (needsOnednn) parts.push('install oneDNN 2.x (https://github.com/oneapi-src/oneDNN, branch rel-2.7; set DNNLROOT to its prefix)');
  return `${parts.join('; ')}, then ${rebuild}`;
}

/** Runs an install plan's commands with their output shown; true when all succeeded (dry run: prints them). */
export function runInstall(plan, env = process.env, log = console.log) {
  log(plan.line);
  for (const argv of plan.commands) {
    if (env.NST_SETUP_DRY_RUN === '1') {
      log(`setup: (dry run) ${argv.join(' ')}`);
      continue;
    }
    const r = spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' });
    if (r.status !== 0) {
      log(`setup: \`${argv.join(' ')}\` failed (${r.error?.message ?? `exit status ${r.status}`})`);
      return false;
    }
  }
  return true;
}

function onPath(command) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, command)));
}

function cmakeVersionAtLeast(major, minor) {
  const r = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
  const m = /version (\d+)\.(\d+)/.exec(r.stdout ?? '');
  return m !== null && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

/** oneDNN's major version from its header, where CMake looks for it (DNNLROOT, then the system folders); 0 when absent. */
export function onednnMajor(env = process.env) {
  const roots = [env.DNNLROOT, '/usr', '/usr/local', '/opt/homebrew'].filter(Boolean);
  for (const root of roots) {
    const header = path.join(root, 'include', 'oneapi', 'dnnl', 'dnnl_version.h');
    if (!existsSync(header)) continue;
    const m = /define DNNL_VERSION_MAJOR\s+(\d+)/.exec(readFileSync(header, 'utf8'));
    if (m) return Number(m[1]);
  }
  return 0;
}

/**
 * Checks, then installs what is missing when this user may, else prints the
 * line that says what is missing and the command to run. True when nothing
 * is missing afterwards (or, on a dry run, would be).
 */
export function setUpSystem(env = process.env, log = console.log) {
  const missing = missingPrerequisites(env);
  if (missing.length === 0) return true;
  const plan = planSetup(missing, systemFacts());
  if (plan.action === 'advise') {
    log(plan.line);
    return false;
  }
  if (!runInstall(plan, env, log)) return false;
  if (env.NST_SETUP_DRY_RUN === '1') return true;
  const still = missingPrerequisites(env);
  if (still.length > 0) log(`setup: still missing after apt-get: ${still.map((m) => m.what).join(', ')}`);
  return still.length === 0;
}

// `node prerequisites.mjs` (CI): set the system up; exit status 1 when anything stays missing.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ready = setUpSystem();
  if (ready) console.log('setup: the native CPU engine has what it needs to build');
  process.exitCode = ready ? 0 : 1;
}
