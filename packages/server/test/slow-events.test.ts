import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import type http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiServer, folderStore, openQueue, previewKey, redisConnection, type RenderQueue } from '@nst/server';
import { nstBin, rssMiB, serveToken, startRedis, startServe, until, type Proc } from './helpers.js';

// Issue 21: 200 /events clients that stop reading grew `nst serve` from 113 to 830 MB, and it stayed there.
// The real server (the built CLI) and Redis on loopback; the test plays the worker: it moves the job's
// progress and writes a new preview (about 270 KB as a data URL) to the store every half second.
const ready = existsSync(nstBin);
const CLIENTS = 200;
const PREVIEWS = 40;

/** A queued job that nobody works on, and how to move it as a worker would: a new preview (about 200 KB of JPEG noise) and progress. */
async function watchedJob(queue: RenderQueue, storeDir: string): Promise<{ id: string; publish(n: number): Promise<void> }> {
  const store = folderStore(storeDir);
  const job = await queue.add(
    'render',
    { content: 'inputs/none', styles: ['inputs/none'], options: { iterations: '1000' } },
    { jobId: randomUUID() },
  );
  return {
    id: job.id!,
    async publish(n) {
      const preview = await sharp({
        create: { width: 640, height: 480, channels: 3, background: 'black', noise: { type: 'gaussian', mean: 128 + n, sigma: 60 } },
      })
        .jpeg({ quality: 95 })
        .toBuffer();
      await store.put(previewKey(job.id!), preview);
      await job.updateProgress({ iteration: n * 10, iterations: 1000, preview: n });
    },
  };
}

/** A client that asks for a job's events and then never reads: its socket is paused for good. */
function stalledClient(base: string, id: string): net.Socket {
  const s = net.connect(Number(new URL(base).port), '127.0.0.1');
  s.on('error', () => undefined);
  s.write(`GET /api/jobs/${id}/events HTTP/1.1\r\nhost: test\r\nauthorization: Bearer ${serveToken}\r\n\r\n`);
  s.pause();
  return s;
}

describe.skipIf(!ready && process.env.CI !== 'true')('slow event readers', () => {
  const procs: Proc[] = [];
  const sockets: net.Socket[] = [];
  const queues: RenderQueue[] = [];
  let inProcess: http.Server | undefined;
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    inProcess?.closeAllConnections();
    await new Promise((r) => (inProcess ? inProcess.close(r) : r(undefined)));
    for (const q of queues) await q.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it(`keeps the server's memory bounded while ${CLIENTS} clients read nothing, and gives it back when they leave`, async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'nst-sse-')), 'store');
    const server = await startServe(redis.url, dir);
    procs.push(server.proc);
    const queue = openQueue(redisConnection(redis.url));
    queues.push(queue);
    const { id, publish } = await watchedJob(queue, dir);

    // A client that reads: it must keep getting news while the others stall.
    const readerPreviews: number[] = [];
    const stopReading = new AbortController();
    const reader = await fetch(`${server.base}/api/jobs/${id}/events`, {
      headers: { authorization: `Bearer ${serveToken}` },
      signal: stopReading.signal,
    });
    const readerDone = (async () => {
      const decoder = new TextDecoder();
      let text = '';
      for await (const chunk of reader.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let k = text.indexOf('\n\n'); k >= 0; k = text.indexOf('\n\n')) {
          const block = text.slice(0, k);
          text = text.slice(k + 2);
          const m = /^event: preview\ndata: (.*)$/s.exec(block);
          if (m) readerPreviews.push(JSON.parse(m[1]).iteration as number);
        }
      }
    })().catch(() => undefined); // ends when the test aborts it; a reader cut off early misses the last preview below
    // Warm up (one preview through the whole path), then the baseline.
    await publish(1);
    await until(async () => readerPreviews.length >= 1, 10_000, 'the first preview');
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = rssMiB(server.pid);

    // The clients that stop reading: the request goes out, then the socket is paused for good.
    for (let k = 0; k < CLIENTS; k++) sockets.push(stalledClient(server.base, id));
    let peak = baseline;
    const started = Date.now();
    for (let n = 2; n <= PREVIEWS && Date.now() - started < 60_000; n++) {
      await publish(n);
      await new Promise((r) => setTimeout(r, 500));
      peak = Math.max(peak, rssMiB(server.pid));
    }
    // The reader saw the last preview although 200 clients stalled on the same job.
    await until(async () => readerPreviews.at(-1) === PREVIEWS * 10, 10_000, 'the reader to get the last preview');

    for (const s of sockets) s.destroy();
    // Memory given back: a bounded wait for the server to settle.
    let after = rssMiB(server.pid);
    for (const end = Date.now() + 20_000; after > baseline + 50 && Date.now() < end; after = rssMiB(server.pid))
      await new Promise((r) => setTimeout(r, 500));
    console.log(
      `slow event readers: RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB with ${CLIENTS} stalled clients, ${after.toFixed(0)} MiB after they left`,
    );
    expect(peak - baseline).toBeLessThan(100);
    expect(after - baseline).toBeLessThan(50);
    // The server still answers.
    const view = await fetch(`${server.base}/api/jobs/${id}`, { headers: { authorization: `Bearer ${serveToken}` } });
    expect(view.status).toBe(200);
    stopReading.abort();
    await readerDone;
  });

  it('disconnects a client that has taken nothing for the stall time', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'nst-sse-stall-')), 'store');
    const queue = openQueue(redisConnection(redis.url));
    queues.push(queue);
    inProcess = createApiServer({ store: folderStore(dir), queue, token: serveToken, eventsEveryMs: 100, eventsStallMs: 1000 });
    await new Promise<void>((resolve) => inProcess!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(inProcess.address() as AddressInfo).port}`;
    const { id, publish } = await watchedJob(queue, dir);
    const connections = () => new Promise<number>((resolve, reject) => inProcess!.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    sockets.push(stalledClient(base, id));
    await until(async () => (await connections()) === 1, 5000, 'the client to connect');
    // Previews until its buffers are full, then the stall time: the server lets it go.
    for (let n = 1; n <= 60 && (await connections()) > 0; n++) {
      await publish(n);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(await connections()).toBe(0);
  });
});
