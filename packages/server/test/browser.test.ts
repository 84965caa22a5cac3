import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import puppeteer, { type Browser } from 'puppeteer-core';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiServer, folderStore, openQueue, redisConnection, type RenderQueue } from '@nst/server';
import { nstBin, startCli, startRedis, until, type Proc } from './helpers.js';

// The web page in a real headless Chromium: submit the examples, watch previews arrive, download the result.
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Random weights have every layer the page's default loss uses (conv4_2, conv5_1).
const weights = 'random:4';
const ready = existsSync(chromium) && existsSync(nstBin);

describe.skipIf(!ready && process.env.CI !== 'true')('web page', () => {
  const procs: Proc[] = [];
  let server: ReturnType<typeof createApiServer> | undefined;
  let queue: RenderQueue | undefined;
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    server?.closeAllConnections();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    await queue?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it('submits a job, shows previews as the image forms, and downloads the result', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-web-'));
    const store = path.join(dir, 'store');
    queue = openQueue(redisConnection(redis.url));
    const token = 'browser-test-token';
    server = createApiServer({ store: folderStore(store), queue, token, eventsEveryMs: 200 });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const worker = startCli(['worker', '--store', store, '-w', weights, '--backend', 'cpu', '--preview-seconds', '0.3'], redis.url);
    procs.push(worker);

    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 760 });
    const downloads = path.join(dir, 'downloads');
    const cdp = await page.createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${base}/#token=${token}`);
    await worker.waitFor(/worker ready/);

    await page.click('#content-example');
    await page.click('#style-example');
    await page.select('#size', '64x48');
    await page.$eval('#iterations', (el) => ((el as unknown as { value: string }).value = '120'));
    await page.click('button[type=submit]');

    // A preview arrives while the job runs, then the result replaces it and the download link appears.
    const explain = async (e: unknown) => {
      const shown = await page.$eval('body', (el) => el.textContent).catch(() => '');
      throw new Error(`${(e as Error).message}\npage:\n${shown}\nerrors: ${errors.join('; ')}\nworker:\n${worker.output().slice(-1500)}`);
    };
    await page.waitForSelector('#preview[data-previews]', { timeout: 60_000 }).catch(explain);
    await page.waitForSelector('#download:not([hidden])', { timeout: 90_000 }).catch(explain);
    expect(await page.$eval('#job-state', (el) => el.textContent)).toBe('done');
    expect(await page.$eval('#progress', (el) => el.textContent)).toMatch(/^iteration 120 of 120, loss /);
    expect(await page.$eval('#jobs tbody', (el) => el.textContent)).toMatch(/done/);
    if (process.env.NST_SCREENSHOT) await page.screenshot({ path: process.env.NST_SCREENSHOT });

    await page.click('#download');
    await until(async () => existsSync(downloads) && readdirSync(downloads).some((f) => f.endsWith('.png')), 20_000, 'the download');
    const file = readdirSync(downloads).find((f) => f.endsWith('.png'))!;
    const meta = await sharp(readFileSync(path.join(downloads, file))).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
    expect(errors).toEqual([]);
  }, 180_000);
});
