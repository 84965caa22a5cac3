import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { folderStore } from '@nst/server';
import { nstBin, startApi, startCli, startRedis, until, type Proc } from './helpers.js';

// The web page in a real headless Chromium, on a phone's width (390 px): submit the examples, watch previews
// arrive, cancel and retry with the page's buttons, reopen a job (its loss curve is redrawn), the job list with
// thumbnails and filters, the workers, the download; nothing wider than the screen.
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Random weights have every layer the page's default loss uses (conv4_2, conv5_1).
const weights = 'random:4';
/** An element's data attributes, as the page's callbacks read them (this file has no DOM types). */
type Dataset = { dataset: Record<string, string | undefined> };
const ready = existsSync(chromium) && existsSync(nstBin);

describe.skipIf(!ready && process.env.CI !== 'true')('web page', () => {
  const procs: Proc[] = [];
  let api: Awaited<ReturnType<typeof startApi>> | undefined;
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    await api?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it('submits, cancels, retries, lists jobs with thumbnails, redraws a reopened job, downloads, and fits 390 px', async () => {
    const redis = await startRedis();
    procs.push(redis.proc);
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-web-'));
    const store = path.join(dir, 'store');
    const token = 'browser-test-token';
    api = await startApi(redis.url, { store: folderStore(store), token, eventsEveryMs: 200 });
    const worker = startCli(['worker', '--store', store, '-w', weights, '--backend', 'cpu', '--preview-seconds', '0.3'], redis.url);
    procs.push(worker);

    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      userDataDir: mkdtempSync(path.join(tmpdir(), 'nst-chromium-')),
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    const page: Page = await browser.newPage();
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    const downloads = path.join(dir, 'downloads');
    const cdp = await page.createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    const explain = async (e: unknown) => {
      const shown = await page.$eval('body', (el) => el.textContent).catch(() => '');
      throw new Error(`${(e as Error).message}\npage:\n${shown}\nerrors: ${errors.join('; ')}\nworker:\n${worker.output().slice(-1500)}`);
    };
    const stateIs = (state: string, timeout = 60_000) =>
      page.waitForFunction(`document.getElementById('job-state')?.textContent === '${state}'`, { timeout }).catch(explain);
    // The job list is redrawn every 3 s: an element of it is found and clicked in one step, in the page.
    const clickNow = (selector: string) => page.$eval(selector, (el) => (el as unknown as { click(): void }).click()).catch(explain);
    const text = (selector: string) => page.$eval(selector, (el) => el.textContent ?? '');

    // The token is typed in, kept for the session only, and never put in the address.
    await page.goto(api.base);
    await page.type('#token', token);
    await page.$eval('#token', (el) => el.dispatchEvent(new Event('change')));
    await worker.waitFor(/worker ready/);

    await page.click('#content-example');
    await page.click('#style-example');
    await page.select('#size', '64x48');
    const setIterations = (n: number) => page.$eval('#iterations', (el, v) => ((el as unknown as { value: string }).value = v), String(n));
    await setIterations(5000);
    await page.click('button[type=submit]');

    // A long job: it runs (a preview arrives, the loss curve grows), is cancelled with the button, and retried.
    await stateIs('running');
    await page.waitForSelector('#preview[data-previews]', { timeout: 60_000 }).catch(explain);
    await page.waitForFunction("Number(document.getElementById('chart')?.dataset.points) >= 2", { timeout: 60_000 }).catch(explain);
    expect(await text('#progress')).toMatch(/^iteration \d+ of 5000, loss .* on .*-\d+-[0-9a-f]{6}/);
    // The list redraws every 3 s: it may not show the job running yet.
    await page.waitForSelector('#jobs li[data-state=running]', { timeout: 15_000 }).catch(explain);
    const longId = await page.$eval('#jobs li[data-state=running]', (el) => (el as unknown as Dataset).dataset.id!).catch(explain);
    await page.click('#cancel');
    await stateIs('cancelled', 10_000);
    await page.click('#retry');
    await page
      .waitForFunction("['queued', 'running'].includes(document.getElementById('job-state')?.textContent ?? '')", { timeout: 10_000 })
      .catch(explain);
    // And cancelled again from the job list's own button.
    await page.waitForSelector(`#jobs li[data-id="${longId}"] button.cancel`, { timeout: 10_000 }).catch(explain);
    await clickNow(`#jobs li[data-id="${longId}"] button.cancel`);
    await stateIs('cancelled', 10_000);

    // A short job runs to the end: the result replaces the preview and can be downloaded.
    await setIterations(120);
    await page.click('button[type=submit]');
    await page.waitForSelector('#downloads:not([hidden])', { timeout: 120_000 }).catch(explain);
    expect(await text('#job-state')).toBe('done');
    expect(await text('#progress')).toMatch(/^iteration 120 of 120, loss /);
    expect(await text('#job-times')).toMatch(/^submitted .*, started .*, finished /);

    // The job list: thumbnails of content, style and result, the file names and settings, the workers.
    await page
      .waitForFunction("[...document.querySelectorAll('#jobs li[data-state=done] img')].filter((i) => i.naturalWidth > 0).length === 3", {
        timeout: 20_000,
      })
      .catch(explain);
    const card = await text('#jobs li[data-state=done]');
    expect(card).toMatch(/photo\.png in the style of swirls\.png/);
    expect(card).toMatch(/size 64x48, 120 iterations, style weight 40/);
    expect(await text('#workers')).toMatch(/\(cpu\): .*images done; heartbeat \d+ s ago/);

    // Reopening the cancelled job redraws its loss curve from the server's record.
    await clickNow(`#jobs li[data-id="${longId}"] .about`);
    await stateIs('cancelled', 10_000);
    expect(Number(await page.$eval('#chart', (el) => (el as unknown as Dataset).dataset.points))).toBeGreaterThanOrEqual(2);
    await page.click('input[name=filter][value=cancelled]');
    await page.waitForFunction("[...document.querySelectorAll('#jobs li')].every((li) => li.dataset.state === 'cancelled')", {
      timeout: 10_000,
    });

    // Nothing is wider than the phone's screen.
    const widths = (await page.evaluate('[document.documentElement.scrollWidth, document.body.scrollWidth]')) as number[];
    expect(Math.max(...widths)).toBeLessThanOrEqual(390);
    if (process.env.NST_SCREENSHOT) {
      // The phone's view, and a desktop's (docs/web-page.png is made so).
      await page.screenshot({ path: process.env.NST_SCREENSHOT.replace(/\.png$/, '-390.png'), fullPage: true });
      await page.setViewport({ width: 1000, height: 900 });
      await page.click('input[name=filter][value=""]');
      await new Promise((r) => setTimeout(r, 1000));
      await page.screenshot({ path: process.env.NST_SCREENSHOT, fullPage: true });
      await page.setViewport({ width: 390, height: 844, isMobile: true });
    }
    expect(page.url()).not.toContain(token);
    expect(await page.evaluate("[sessionStorage.getItem('nst-token'), localStorage.length]")).toEqual([token, 0]);

    // Back to the done job, and download its result.
    await page.click('input[name=filter][value=done]');
    await page.waitForSelector('#jobs li[data-state=done] .about', { timeout: 10_000 });
    await clickNow('#jobs li[data-state=done] .about');
    await page.waitForSelector('#downloads:not([hidden])', { timeout: 10_000 }).catch(explain);
    await page.click('#download');
    await until(async () => existsSync(downloads) && readdirSync(downloads).some((f) => f.endsWith('.png')), 20_000, 'the download');
    const file = readdirSync(downloads).find((f) => f.endsWith('.png'))!;
    const meta = await sharp(readFileSync(path.join(downloads, file))).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
    expect(errors).toEqual([]);

    // Masks (issue 25): a mask for the painting and one for the photo, chosen in the page, go up with the job,
    // which the worker's engine renders with them.
    const mask = path.join(dir, 'left-half.png');
    const half = Buffer.alloc(64 * 48);
    for (let y = 0; y < 48; y++) half.fill(255, y * 64, y * 64 + 32);
    await sharp(half, { raw: { width: 64, height: 48, channels: 1 } })
      .png()
      .toFile(mask);
    for (const input of ['#style-mask', '#content-mask']) {
      const handle = await page.$(input);
      await (handle as unknown as { uploadFile(file: string): Promise<void> }).uploadFile(mask);
    }
    await setIterations(5);
    const before = await text('#job-id');
    await page.click('button[type=submit]');
    await page.waitForFunction(`document.getElementById('job-id')?.textContent !== '${before}'`, { timeout: 10_000 }).catch(explain);
    // The job's end, from the API (the page's state line may still show the job before it for a moment).
    const shortId = await text('#job-id');
    type Listed = { id: string; state: string; error?: string; names: Record<string, unknown> };
    const { base } = api;
    const maskedJob = async () => {
      const res = await fetch(`${base}/api/jobs?limit=10`, { headers: { authorization: `Bearer ${token}` } });
      return ((await res.json()) as { jobs: Listed[] }).jobs.find((j) => j.id.startsWith(shortId))!;
    };
    await until(async () => ['done', 'failed'].includes((await maskedJob()).state), 120_000, 'the masked job to end');
    const masked = await maskedJob();
    expect(masked.names).toMatchObject({ masks: { 'style-mask': ['left-half.png'], 'content-mask': ['left-half.png'] } });
    expect(masked.state, masked.error).toBe('done');
    await page.waitForFunction("document.getElementById('job-state')?.textContent === 'done'", { timeout: 10_000 }).catch(explain);
    expect(errors).toEqual([]);
  }, 240_000);
});
