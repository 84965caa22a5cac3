import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nstBin, rssMiB, serveToken, startRedis, startServe, submitJob, type Proc } from './helpers.js';

// Issue 21: requests that took `nst serve` down or let one client take its memory. The real server
// (the built CLI, default limits) and Redis on loopback; raw sockets where a client must misbehave.
const ready = existsSync(nstBin);

/** What a raw HTTP exchange came to: the response's text, whether the server closed, the bytes the client got out. */
interface Exchange {
  response: string;
  closed: boolean;
  sent: number;
}

/**
 * Sends `head` (request line and headers), then `body` chunks while the server takes them, for at most
 * `ms`; resolves when the server closes the connection or the time is up.
 */
function exchange(port: number, head: string, body?: { chunk: Buffer; upTo: number }, ms = 10_000): Promise<Exchange> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const result: Exchange = { response: '', closed: false, sent: 0 };
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(result);
    };
    const timer = setTimeout(done, ms);
    s.on('data', (d) => (result.response += d.toString('latin1')));
    s.on('error', () => undefined); // EPIPE/ECONNRESET: the server stopped taking the body
    s.on('close', () => {
      result.closed = true;
      done();
    });
    s.write(head);
    const pump = () => {
      while (body && !s.destroyed && result.sent < body.upTo) {
        result.sent += body.chunk.length;
        if (!s.write(body.chunk)) return void s.once('drain', pump);
      }
    };
    pump();
  });
}

const statusOf = (e: Exchange) => Number(/^HTTP\/1\.1 (\d{3})/.exec(e.response)?.[1] ?? 0);
const auth = `authorization: Bearer ${serveToken}\r\n`;

describe.skipIf(!ready && process.env.CI !== 'true')('hostile requests', () => {
  const procs: Proc[] = [];
  let base = '';
  let port = 0;
  let pid = 0;
  let store = '';
  let small: Blob;
  beforeAll(async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    store = path.join(mkdtempSync(path.join(tmpdir(), 'nst-hostile-')), 'store');
    const server = await startServe(redis.url, store);
    procs.push(server.proc);
    ({ base, pid } = server);
    port = Number(new URL(base).port);
    small = new Blob([
      await sharp({ create: { width: 40, height: 30, channels: 3, background: 'teal' } })
        .png()
        .toBuffer(),
    ]);
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
  });

  it('answers a body that ends inside a file part with a 400, and the next request as usual', async () => {
    const body = '--X\r\nContent-Disposition: form-data; name="content"; filename="c.png"\r\n\r\nabc';
    const e = await exchange(
      port,
      `POST /api/jobs HTTP/1.1\r\nhost: t\r\n${auth}connection: close\r\ncontent-type: multipart/form-data; boundary=X\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    expect(statusOf(e)).toBe(400);
    expect(e.response).toContain('{"error":"malformed multipart request (Unexpected end of form)"}');
    const next = await fetch(`${base}/api/jobs`, { headers: { authorization: `Bearer ${serveToken}` } });
    expect(next.status).toBe(200);
  });

  it('answers every broken limit and cut-off body of a multipart request with a 4xx, and lives on', async () => {
    const form = (build: (f: FormData) => void) => {
      const f = new FormData();
      build(f);
      return f;
    };
    const bigFile = new Blob([new Uint8Array(21 * 2 ** 20)]);
    const cases: [FormData, number, string][] = [
      [form((f) => f.append('content', bigFile, 'c.png')), 413, 'content: a file is larger than 20971520 bytes'],
      // The content, and per style (8 at most) its image, mask and region, and a content mask: 26 files.
      [form((f) => Array.from({ length: 27 }, () => f.append('style', small, 's.png'))), 413, 'style: at most 26 files'],
      [form((f) => f.append('size', 'x'.repeat(5000))), 413, 'size: is too long'],
      [form((f) => Array.from({ length: 41 }, (_, k) => f.append(`f${k}`, 'v'))), 413, 'too many fields'],
    ];
    for (const [body, status, error] of cases) {
      const r = await fetch(`${base}/api/jobs`, { method: 'POST', body, headers: { authorization: `Bearer ${serveToken}` } });
      expect([r.status, ((await r.json()) as { error: string }).error]).toEqual([status, error]);
    }
    const cutOff = [
      '--X\r\nContent-Disposition: form-data; name="size"\r\n\r\n64x48',
      '--X\r\nContent-Disposition: form-da',
      '--Y\r\nContent-Disposition: form-data; name="content"; filename="c.png"\r\n\r\nabc\r\n--Y--\r\n',
    ];
    for (const body of cutOff) {
      const e = await exchange(
        port,
        `POST /api/jobs HTTP/1.1\r\nhost: t\r\n${auth}connection: close\r\ncontent-type: multipart/form-data; boundary=X\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      expect(statusOf(e)).toBe(400);
    }
    expect((await fetch(`${base}/api/jobs`, { headers: { authorization: `Bearer ${serveToken}` } })).status).toBe(200);
  });

  it('refuses a body by its declared length or a missing token before reading it, and closes the connection', async () => {
    const chunk = Buffer.alloc(64 * 1024, 97);
    const twoGiB = 2 * 2 ** 30;
    const post = (headers: string) =>
      `POST /api/jobs HTTP/1.1\r\nhost: t\r\n${headers}content-type: multipart/form-data; boundary=X\r\ncontent-length: ${twoGiB}\r\n\r\n`;
    // The client offers 2 GiB; the answer comes at once and the server takes a few socket buffers' worth at most.
    const tooLong = await exchange(port, post(auth), { chunk, upTo: twoGiB });
    expect(statusOf(tooLong)).toBe(413);
    expect(tooLong.response).toMatch(/\r\nconnection: close\r\n/i);
    expect(tooLong.response).toContain('"error":"the request is larger than 67108864 bytes"');
    expect(tooLong.closed).toBe(true);
    expect(tooLong.sent).toBeLessThan(64 * 2 ** 20);

    const noToken = await exchange(port, post(''), { chunk, upTo: twoGiB });
    expect(statusOf(noToken)).toBe(401);
    expect(noToken.closed).toBe(true);
    expect(noToken.sent).toBeLessThan(64 * 2 ** 20);

    // A client that asks first (Expect: 100-continue) gets the refusal instead of a 100, before it sends anything.
    const asked = await exchange(port, post('expect: 100-continue\r\n'));
    expect(asked.response).not.toContain(' 100 Continue');
    expect(statusOf(asked)).toBe(401);
    expect(asked.closed).toBe(true);

    // A chunked body declares no length: it is cut off at the request limit (64 MiB), not read to its end.
    const rssBefore = rssMiB(pid);
    const chunked = await exchange(
      port,
      `POST /api/jobs HTTP/1.1\r\nhost: t\r\n${auth}content-type: multipart/form-data; boundary=X\r\ntransfer-encoding: chunked\r\n\r\n`,
      { chunk: Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]), upTo: 1024 * 2 ** 20 },
      30_000,
    );
    expect(statusOf(chunked)).toBe(413);
    expect(chunked.closed).toBe(true);
    expect(chunked.sent).toBeLessThan(200 * 2 ** 20);
    expect(rssMiB(pid) - rssBefore).toBeLessThan(150);
  });

  it("refuses a request over the pixel budget from the images' headers, and bounds the decodes in flight", async () => {
    // Issue 21: a content and 8 styles, 40-megapixel 16-bit PNGs (2.9 MB in all), took the server from 351 to 1334 MB.
    const big = (shade: number) =>
      sharp({ create: { width: 7300, height: 5470, channels: 4, background: { r: shade, g: 90, b: 30, alpha: 1 } } })
        .toColourspace('rgb16')
        .png({ compressionLevel: 9 })
        .toBuffer();
    const bigPng = new Blob([await big(10)]);
    const bigPng2 = new Blob([await big(200)]);
    const fields = { size: '64x48', iterations: '10' };
    const baseline = rssMiB(pid);
    const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
    let t = Date.now();
    const nine = await submitJob(base, serveToken, { content: bigPng, style: Array(8).fill(bigPng2) }, fields);
    expect(nine).toMatchObject({ status: 413, body: { field: 'style' } });
    expect(nine.body.error).toMatch(/^style: the images have \d+ pixels in all, more than 100000000$/);
    expect(Date.now() - t).toBeLessThan(5000);

    // Eight requests at the budget's edge (two 40-megapixel images each) at once, and a small one among them.
    const peakBefore = hwm();
    const heavy = Array.from({ length: 8 }, (_, k) =>
      submitJob(base, serveToken, { content: k % 2 ? bigPng : bigPng2, style: k % 2 ? bigPng2 : bigPng }, fields),
    );
    await new Promise((r) => setTimeout(r, 1000)); // the heavy ones are decoding
    t = Date.now();
    const light = await submitJob(base, serveToken, { content: small, style: small }, fields);
    const lightSeconds = (Date.now() - t) / 1000;
    const heavyResults = await Promise.all(heavy);
    const heavySeconds = (Date.now() - t) / 1000;
    const peak = hwm();
    console.log(
      `decoding: RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB (${peakBefore.toFixed(0)} before the eight), the small submission took ${lightSeconds.toFixed(2)} s, the eight ${heavySeconds.toFixed(1)} s`,
    );
    expect(light.status).toBe(201);
    for (const r of heavyResults) expect(r.status).toBe(201);
    // It passed them: they were still decoding when it was done (an order, not a time: the machine may be loaded).
    expect(heavySeconds).toBeGreaterThan(lightSeconds);
    expect(peak - baseline).toBeLessThan(400);
    // Inputs are stored once each: the two big images and the small one.
    expect(readdirSync(path.join(store, 'inputs'))).toHaveLength(3);
  });
});
