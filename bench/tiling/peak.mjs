// Preloaded into an `nst` process (node --import ./bench/tiling/peak.mjs ...):
// prints the process's peak resident memory (VmHWM of /proc/self/status) on
// stderr when it exits, as `peak-rss-bytes N`.
import { readFileSync } from 'node:fs';

process.on('exit', () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (m) process.stderr.write(`peak-rss-bytes ${Number(m[1]) * 1024}\n`);
});
