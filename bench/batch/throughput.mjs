// Images per hour on this machine, side by side in one run:
//   1. `nst batch` (jobs packed into engine batches) against `nst render` one job at a time;
//   2. one `nst worker` against two, behind `nst serve` and a real redis-server.
// Every job: 256x256 (or --size WxH), blocks 1-3 weights, style conv1_1,conv2_1,conv3_1, content conv3_2.
// Run after `npx turbo run build`: node bench/batch/throughput.mjs [--jobs N] [--iterations N] [--size WxH]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const nst = path.join(root, 'packages', 'cli', 'bin', 'nst.js');
const shared = path.resolve(root, '..', 'shared');
const weights = path.join(shared, 'weights', 'vgg19-keras-blocks1-3');
const images = path.join(shared, 'images');
const arg = (name, fallback) => {
  const k = process.argv.indexOf(`--${name}`);
  return k > 0 ? process.argv[k + 1] : fallback;
};
const JOBS = Number(arg('jobs', '4'));
const ITERATIONS = Number(arg('iterations', '10'));
const SIZE = arg('size', '256x256');
const options = {
  size: SIZE,
  iterations: String(ITERATIONS),
  'style-layers': 'conv1_1,conv2_1,conv3_1',
  'content-layers': 'conv3_2',
  'save-every': '0',
};
const pairs = ['tubingen', 'golden_gate', 'hoovertowernight', 'shipwreck'].flatMap((c) =>
  ['starry_night', 'the_scream'].map((s) => [c, s]),
);
const jobs = Array.from({ length: JOBS }, (_, k) => ({
  content: `${pairs[k % pairs.length][0]}.jpg`,
  style: `${pairs[k % pairs.length][1]}.jpg`,
}));
const dir = mkdtempSync(path.join(tmpdir(), 'nst-bench-batch-'));
const common = ['-w', weights, '--backend', 'cpu'];

function run(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [nst, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`nst ${args[0]} exited ${code}: ${out.slice(-500)}`))));
  });
}

function start(command, args, env, readyPattern) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise((resolve, reject) => {
    const check = () => readyPattern.test(out) && resolve();
    child.stdout.on('data', (c) => ((out += c), check()));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => reject(new Error(`${command} ${args[0] ?? ''} exited ${code}: ${out.slice(-500)}`)));
  });
  return { child, ready, stop: () => new Promise((r) => (child.exitCode !== null ? r() : (child.once('exit', r), child.kill('SIGTERM')))) };
}

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });

const perHour = (n, seconds) => Math.round((n * 3600) / seconds);
const rows = [];
const time = async (label, fn) => {
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  rows.push({ label, seconds, imagesPerHour: perHour(JOBS, seconds) });
  console.error(`${label}: ${seconds.toFixed(1)} s, ${perHour(JOBS, seconds)} images/hour`);
};

const load0 = loadavg()[0];
const started = new Date().toISOString().slice(11, 16);

await time(`nst render, one job at a time (${JOBS} processes)`, async () => {
  for (const [k, j] of jobs.entries()) {
    const flags = Object.entries(options).flatMap(([key, v]) => [`--${key}`, v]);
    await run([
      'render',
      '-c',
      path.join(images, j.content),
      '-s',
      path.join(images, j.style),
      '-o',
      path.join(dir, `single-${k}.png`),
      ...flags,
      ...common,
    ]);
  }
});

const manifest = path.join(dir, 'jobs.jsonl');
writeFileSync(
  manifest,
  jobs
    .map((j, k) =>
      JSON.stringify({ content: path.join(images, j.content), style: path.join(images, j.style), out: `batch-${k}.png`, ...options }),
    )
    .join('\n'),
);
await time(`nst batch (one process, batches of up to ${JOBS})`, async () => {
  await run(['batch', manifest, ...common, '--max-batch', String(JOBS)]);
});
const batchResults = readFileSync(`${manifest}.results.jsonl`, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
if (batchResults.some((r) => r.status !== 'done')) throw new Error('a batch job did not finish');

for (const workers of [1, 2]) {
  const port = await freePort();
  const redisPort = await freePort();
  const redis = start(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {},
    /Ready to accept/,
  );
  await redis.ready;
  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}` };
  const store = path.join(dir, `store-${workers}`);
  const server = start(process.execPath, [nst, 'serve', '--port', String(port), '--store', store, '--token', 'bench'], env, /listening/);
  const ws = Array.from({ length: workers }, () =>
    start(process.execPath, [nst, 'worker', '--store', store, ...common, '--max-batch', String(JOBS)], env, /worker ready/),
  );
  await Promise.all([server.ready, ...ws.map((w) => w.ready)]);
  const base = `http://127.0.0.1:${port}/api`;
  const headers = { authorization: 'Bearer bench' };
  await time(`nst serve + ${workers} nst worker${workers > 1 ? 's' : ''} (batches of up to ${JOBS})`, async () => {
    const ids = [];
    for (const j of jobs) {
      const form = new FormData();
      form.append('content', new Blob([readFileSync(path.join(images, j.content))]), 'c.jpg');
      form.append('style', new Blob([readFileSync(path.join(images, j.style))]), 's.jpg');
      for (const [key, v] of Object.entries(options)) if (key !== 'save-every') form.append(key, v);
      const res = await fetch(`${base}/jobs`, { method: 'POST', body: form, headers });
      ids.push((await res.json()).id);
    }
    for (;;) {
      const states = await Promise.all(ids.map(async (id) => (await (await fetch(`${base}/jobs/${id}`, { headers })).json()).state));
      if (states.includes('failed')) throw new Error('a job failed');
      if (states.every((s) => s === 'done')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  for (const p of [...ws, server, redis]) await p.stop();
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `Machine: ${cpu}, ${cpus().length} cores, Node ${process.version}; ${JOBS} jobs of ${ITERATIONS} iterations at ${SIZE}; run at ${started} UTC, load average ${load0.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end.\n`,
);
console.log('| how | seconds | images / hour |');
console.log('| --- | ---: | ---: |');
for (const r of rows) console.log(`| ${r.label} | ${r.seconds.toFixed(1)} | ${r.imagesPerHour} |`);
