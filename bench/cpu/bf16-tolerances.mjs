#!/usr/bin/env node
// Runs bf16-tolerances.ts: rolldown (already installed for bench/gpu) compiles
// it and the float64 reference it imports into bench/results/ (git-ignored),
// where the workspace packages resolve to their builds (npm run build first).
import { rolldown } from 'rolldown';
import { mkdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '../results/bf16-tolerances.bundle.mjs');
mkdirSync(path.dirname(out), { recursive: true });
const bundle = await rolldown({ input: path.join(here, 'bf16-tolerances.ts'), platform: 'node', external: [/^@nst\//], logLevel: 'warn' });
await bundle.write({ file: out, format: 'esm', codeSplitting: false });
await bundle.close();
await import(pathToFileURL(out).href);
