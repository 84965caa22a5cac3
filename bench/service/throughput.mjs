// Images per hour of the render service with 1, 2 and 3 workers, on the S3 store against the folder store.
// Each configuration: a fresh redis-server, `nst serve` and N `nst worker` processes (each in its own
// temporary folder: with S3 they share nothing but Redis and the bucket), s3rver (its own process) as the S3
// server. The clock runs from the first submission to the last job done.
// Run after `npx turbo run build`: node bench/service/throughput.mjs [--jobs 12] [--iterations 40] [--size 128x96]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const nst = path.join(root, 'packages', 'cli', 'bin', 'nst.js');
const s3rver = path.join(root, 'node_modules', 's3rver', 'bin', 's3rver.js');
const images = path.resolve(root, '..', 'shared', 'images');
const flag = (name, fallback) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const JOBS = Number(flag('jobs', '12'));
const fields = {
  size: flag('size', '128x96'),
  iterations: flag('iterations', '40'),
  'style-layers': 'conv1_1,conv2_1,conv3_1',
  'content-layers': 'conv3_2',
};
const contents = ['tubingen.jpg', 'golden_gate.jpg', 'hoovertowernight.jpg'];
const styles = ['starry_night.jpg', 'the_scream.jpg', 'shipwreck.jpg', 'tubingen.jpg'];
const pictures = Array.from({ length: JOBS }, (_, k) => [
  contents[k % contents.length],
  styles[Math.floor(k / contents.length) % styles.length],
]);
const DEADLINE_S = Number(flag('deadline-seconds', '600'));
/** Which configurations: all, or e.g. --only s3:2 */
const ONLY = flag('only', '');
const token = 'bench-service-token-0123';
const children = [];

/** Starts a process; resolves once a line of its output matches `ready`. */
function launch(command, args, env, ready) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let log = '';
  child.log = () => log;
  return new Promise((resolve, reject) => {
    const hear = (chunk) => {
      log += chunk;
      if (ready.test(log)) resolve(child);
    };
    child.stdout.on('data', hear);
    child.stderr.on('data', hear);
    child.once('exit', (code) =>
      reject(new Error(`${path.basename(args[0] ?? command)} ${args[1] ?? ''} exited ${code}: ${log.slice(-400)}`)),
    );
  });
}
/** Ends a process: SIGTERM (a worker drains), SIGKILL after 10 s (a worker whose Redis is gone cannot). */
const end = (child) =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => (clearTimeout(kill), resolve()));
    child.kill('SIGTERM');
  });
const port = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = s.address();
      s.close(() => resolve(free));
    });
  });

/** A server of the configuration (redis-server, s3rver) ended while it ran, not by this bench. */
class ServerLost extends Error {}

/** A fresh s3rver (its own process) with the bucket `bench`; returns it and how clients reach it. */
async function startS3() {
  const s3Port = await port();
  const child = await launch(
    process.execPath,
    [
      s3rver,
      '-d',
      mkdtempSync(path.join(tmpdir(), 'nst-bench-s3-')),
      '-a',
      '127.0.0.1',
      '-p',
      String(s3Port),
      '--silent',
      '--configure-bucket',
      'bench',
    ],
    {},
    /listening/,
  );
  const env = {
    AWS_ENDPOINT_URL: `http://127.0.0.1:${s3Port}`,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  return { child, env };
}

/** One configuration: returns the seconds from the first submission to the last job done. */
async function measure(storeKind, workers) {
  const redisPort = await port();
  const redis = await launch(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {},
    /Ready to accept/,
  );
  const s3 = storeKind === 's3' ? await startS3() : undefined;
  // On a shared machine something else may end our servers: then this configuration is measured again.
  let lost = false;
  for (const server of [redis, s3?.child]) server?.once('exit', () => (lost = true));
  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...s3?.env };
  const store =
    storeKind === 's3'
      ? `s3://bench/run-${storeKind}-${workers}-${Date.now()}`
      : path.join(mkdtempSync(path.join(tmpdir(), 'nst-bench-folder-')), 'store');
  const httpPort = await port();
  const serve = await launch(
    process.execPath,
    [nst, 'serve', '--port', String(httpPort), '--store', store],
    { ...env, NST_TOKEN: token },
    /listening on/,
  );
  const ws = await Promise.all(
    Array.from({ length: workers }, () => {
      const own = mkdtempSync(path.join(tmpdir(), 'nst-bench-machine-'));
      const args = [nst, 'worker', '--store', store, '--backend', 'cpu', '--max-batch', '2'];
      return launch(
        process.execPath,
        args,
        { ...env, TMPDIR: own, NST_CACHE_DIR: path.join(own, 'cache'), NST_WEIGHTS: '' },
        /worker ready/,
      );
    }),
  );
  const api = `http://127.0.0.1:${httpPort}/api/jobs`;
  const headers = { authorization: `Bearer ${token}` };
  try {
    const t0 = performance.now();
    const ids = [];
    for (const [content, style] of pictures) {
      const form = new FormData();
      form.append('content', new Blob([readFileSync(path.join(images, content))]), content);
      form.append('style', new Blob([readFileSync(path.join(images, style))]), style);
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      const res = await fetch(api, { method: 'POST', body: form, headers });
      if (res.status !== 201) throw new Error(`submission refused: ${await res.text()}`);
      ids.push((await res.json()).id);
    }
    // Bounded: at most DEADLINE_S a configuration; what went wrong is told with the workers' logs.
    for (const deadline = Date.now() + DEADLINE_S * 1000; ; ) {
      if (lost) throw new ServerLost();
      const views = await Promise.all(ids.map(async (id) => (await fetch(`${api}/${id}`, { headers })).json()));
      const states = views.map((v) => v.state);
      const trouble = states.some((s) => s === 'failed')
        ? 'a job failed'
        : Date.now() > deadline
          ? `the jobs did not finish in ${DEADLINE_S} s`
          : '';
      if (trouble)
        throw new Error(
          `${trouble}: ${JSON.stringify(views.map((v) => [v.state, v.iteration, v.worker, v.error]))}\n${ws.map((w) => w.log().slice(-1500)).join('\n---\n')}`,
        );
      if (states.every((s) => s === 'done')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    return (performance.now() - t0) / 1000;
  } finally {
    for (const child of [...ws, serve, redis, s3?.child]) if (child) await end(child);
  }
}

const load0 = loadavg()[0];
const started = new Date().toISOString().slice(11, 16);
const rows = [];
try {
  for (const workers of [1, 2, 3])
    for (const storeKind of ['folder', 's3']) {
      if (ONLY && ONLY !== `${storeKind}:${workers}`) continue;
      let seconds;
      for (let attempt = 1; seconds === undefined; attempt++)
        seconds = await measure(storeKind, workers).catch((e) => {
          if (!(e instanceof ServerLost) || attempt === 3) throw e;
          console.error(`${workers} worker(s), ${storeKind} store: a server of it was ended from outside; measuring again`);
          return undefined;
        });
      rows.push({ workers, storeKind, seconds });
      console.error(
        `${workers} worker(s), ${storeKind} store: ${seconds.toFixed(1)} s, ${Math.round((JOBS * 3600) / seconds)} images/hour`,
      );
    }
} finally {
  for (const child of children) await end(child);
}
console.log(
  `Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${JOBS} jobs of ${fields.iterations} iterations at ${fields.size} (built-in blocks 1-3 weights, cpu backend, --max-batch 2); run at ${started} UTC, load average ${load0.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end.\n`,
);
console.log('| workers | folder store: s | images / hour | S3 store (s3rver): s | images / hour |');
console.log('| ---: | ---: | ---: | ---: | ---: |');
for (const workers of ONLY ? [] : [1, 2, 3]) {
  const [f, s] = ['folder', 's3'].map((k) => rows.find((r) => r.workers === workers && r.storeKind === k));
  const per = (r) => Math.round((JOBS * 3600) / r.seconds);
  console.log(`| ${workers} | ${f.seconds.toFixed(1)} | ${per(f)} | ${s.seconds.toFixed(1)} | ${per(s)} |`);
}
