#!/usr/bin/env node
// Makes the two quick-start commands work on a fresh clone: when the
// dependencies are missing, run `npm ci` (which builds the native addon and
// the TypeScript packages); when only the build is missing, build.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = (args) => execFileSync('npm', args, { cwd: root, stdio: 'inherit' });

export function ensureInstalled() {
  if (!existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
    console.log('installing dependencies: npm ci (first run only)');
    run(['ci', '--no-audit', '--no-fund']);
  } else if (!existsSync(path.join(root, 'packages', 'cli', 'dist', 'main.js'))) {
    run(['run', 'build']);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) ensureInstalled();
