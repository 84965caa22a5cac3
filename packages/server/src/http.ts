import { randomUUID, createHash, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import busboy from 'busboy';
import sharp from 'sharp';
import { formatUserError, isUserError, kebabCase, UserError } from '@nst/core';
import { camelCase } from '@nst/batch';
import { INIT_KINDS, isInitKind, jobFromOptions, JOB_OPTIONS, optionsFor, planScales } from '@nst/job';
import { describeJob, previewKey, resultKey, type RenderJob, type RenderQueue } from './queue.js';
import { inputKey, type BlobStore } from './store.js';

export interface ApiLimits {
  /** Bytes per uploaded file. */
  readonly uploadBytes: number;
  /** Pixels an uploaded image may have (decoded). */
  readonly inputPixels: number;
  /** Pixels of the output. */
  readonly outputPixels: number;
  readonly iterations: number;
  readonly styles: number;
  /** Attempts per job (a job that keeps failing ends as failed). */
  readonly attempts: number;
}

export const DEFAULT_API_LIMITS: ApiLimits = {
  uploadBytes: 20 * 2 ** 20,
  inputPixels: 40_000_000,
  outputPixels: 1024 * 1024,
  iterations: 5000,
  styles: 8,
  attempts: 3,
};

export interface ApiOptions {
  readonly store: BlobStore;
  readonly queue: RenderQueue;
  readonly token: string;
  readonly limits?: Partial<ApiLimits>;
  /** How often server-sent events look for news. */
  readonly eventsEveryMs?: number;
}

/** Job fields a request may set as text: the option table's for the HTTP API, less the uploaded files. */
const REQUEST_FIELDS = new Set<string>(optionsFor('http').filter((f) => !JOB_OPTIONS[f].upload));
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An HTTP error: a status and a one-line JSON body naming the field (kebab-case) at fault. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The web page's files, read once: no request path ever reaches the file system. */
function webFiles(): Map<string, { type: string; body: Buffer }> {
  const dir = fileURLToPath(new URL('../web/', import.meta.url));
  const types: Record<string, string> = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.png': 'image/png',
    '.jpg': 'image/jpeg',
    '.svg': 'image/svg+xml',
  };
  const files = new Map<string, { type: string; body: Buffer }>();
  const walk = (sub: string) => {
    for (const e of readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else if (types[path.extname(e.name)])
        files.set(`/${rel}`, { type: types[path.extname(e.name)], body: readFileSync(path.join(dir, rel)) });
    }
  };
  walk('');
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  return files;
}

/**
 * The HTTP API and the web page. Every /api route needs
 * `Authorization: Bearer <token>`; uploads are bounded, decoded and checked
 * before a job is queued; errors are one line of JSON naming the field.
 */
export function createApiServer(options: ApiOptions): http.Server {
  const limits = { ...DEFAULT_API_LIMITS, ...options.limits };
  const web = webFiles();
  const tokenDigest = createHash('sha256').update(options.token).digest();
  const authorised = (req: http.IncomingMessage) => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(createHash('sha256').update(m[1]).digest(), tokenDigest);
  };

  const findJob = async (id: string): Promise<RenderJob> => {
    const job = JOB_ID.test(id) ? await options.queue.getJob(id) : undefined;
    if (!job) throw new HttpError(404, `no job '${id.slice(0, 40)}'`, 'id');
    return job;
  };

  const routes = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] !== 'api') {
      const file = req.method === 'GET' ? web.get(url.pathname) : undefined;
      if (!file) throw new HttpError(404, 'not found');
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' }).end(file.body);
      return;
    }
    if (!authorised(req)) throw new HttpError(401, 'missing or wrong bearer token', 'authorization');
    if (parts.length > 4) throw new HttpError(404, `no route ${req.method} ${url.pathname.slice(0, 80)}`);
    const route = `${req.method} /${parts.slice(1, 2).join('/')}${parts.length > 2 ? '/:id' : ''}${parts.length > 3 ? `/${parts[3]}` : ''}`;
    const id = parts[2] ?? '';
    switch (route) {
      case 'POST /jobs':
        return sendJson(res, 201, { id: await submit(req, options, limits) });
      case 'GET /jobs': {
        const jobs = await options.queue.getJobs(['active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed'], 0, 49);
        jobs.sort((a, b) => b.timestamp - a.timestamp);
        return sendJson(res, 200, { jobs: await Promise.all(jobs.slice(0, 50).map(describeJob)) });
      }
      case 'GET /jobs/:id':
        return sendJson(res, 200, await describeJob(await findJob(id)));
      case 'GET /jobs/:id/result': {
        const job = await findJob(id);
        const state = (await describeJob(job)).state;
        if (state !== 'done') throw new HttpError(409, `the job is ${state}, not done`, 'id');
        const bytes = await options.store.get(resultKey(job.id!));
        if (!bytes) throw new HttpError(500, 'the result is missing from the store');
        res
          .writeHead(200, {
            'content-type': 'image/png',
            'content-length': bytes.length,
            'content-disposition': `attachment; filename="nst-${job.id}.png"`,
          })
          .end(bytes);
        return;
      }
      case 'GET /jobs/:id/events':
        return streamEvents(req, res, await findJob(id), options);
      default:
        throw new HttpError(404, `no route ${req.method} ${url.pathname.slice(0, 80)}`);
    }
  };

  return http.createServer((req, res) => {
    routes(req, res).catch((e) => {
      if (res.headersSent) return res.destroy();
      if (e instanceof HttpError)
        return sendJson(res, e.status, {
          error: e.field && e.status !== 404 && e.status !== 401 ? `${e.field}: ${e.message}` : e.message,
          ...(e.field ? { field: e.field } : {}),
        });
      if (isUserError(e)) {
        const status = e.code === 'too-large' ? 413 : 400;
        return sendJson(res, status, { error: formatUserError(e, kebabCase), ...(e.field ? { field: kebabCase(e.field) } : {}) });
      }
      sendJson(res, 500, { error: `internal error: ${(e as Error).message?.split('\n')[0]}` });
    });
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** Reads a multipart job request, checks everything, stores the inputs and queues the job. */
async function submit(req: http.IncomingMessage, options: ApiOptions, limits: ApiLimits): Promise<string> {
  const { files, fields } = await readMultipart(req, limits);
  const content = files.filter((f) => f.field === 'content');
  const styles = files.filter((f) => f.field === 'style');
  if (content.length !== 1)
    throw new HttpError(400, content.length === 0 ? 'is required (one image file)' : 'expected one image file', 'content');
  if (styles.length === 0) throw new HttpError(400, 'is required (one or more image files)', 'style');
  if (styles.length > limits.styles) throw new HttpError(413, `at most ${limits.styles} style images`, 'style');
  for (const f of files)
    if (f.field !== 'content' && f.field !== 'style') throw new HttpError(400, 'is not a file field (content, style)', f.field);

  const values: Record<string, string> = {};
  for (const [key, value] of fields) {
    const field = camelCase(key);
    if (!REQUEST_FIELDS.has(field) || key !== kebabCase(field)) throw new HttpError(400, 'is not an option this server takes', key);
    if (values[field] !== undefined) throw new HttpError(400, 'is given twice', key);
    if (field === 'init' && !isInitKind(value)) throw new HttpError(400, `expected ${INIT_KINDS.join(', ')}`, key);
    values[field] = value;
  }
  // Checks every option where the CLI checks them, with stand-in paths (none from the request reaches a file system).
  const config = jobFromOptions({ ...values, content: 'content', style: styles.map((_, k) => `style-${k}`), out: 'result.png' });
  if (config.iterations > limits.iterations)
    throw new UserError(`at most ${limits.iterations}`, { code: 'too-large', field: 'iterations' });

  const [contentInfo, ...styleInfo] = await Promise.all([decodeCheck(content[0], limits), ...styles.map((s) => decodeCheck(s, limits))]);
  // The size, the scales and the style sizes are checked as for `nst render`, with the uploads' decoded sizes.
  const { size } = planScales(config, contentInfo, styleInfo);
  if (size.width * size.height > limits.outputPixels)
    throw new UserError(`${size.width}x${size.height} is more than ${limits.outputPixels} pixels`, { code: 'too-large', field: 'size' });

  const store = async (f: Upload) => {
    const key = inputKey(f.bytes);
    await options.store.putOnce(key, f.bytes);
    return key;
  };
  const id = randomUUID();
  await options.queue.add(
    'render',
    {
      content: await store(content[0]),
      styles: await Promise.all(styles.map(store)),
      options: { ...values, iterations: String(config.iterations) },
    },
    {
      jobId: id,
      attempts: limits.attempts,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { count: 1000 },
      removeOnFail: { count: 1000 },
    },
  );
  return id;
}

interface Upload {
  readonly field: string;
  readonly bytes: Buffer;
}

/** Parses a multipart/form-data body within the limits: files (bounded in size and number) and short text fields. */
function readMultipart(req: http.IncomingMessage, limits: ApiLimits): Promise<{ files: Upload[]; fields: [string, string][] }> {
  return new Promise((resolve, reject) => {
    if (!/^multipart\/form-data/i.test(req.headers['content-type'] ?? ''))
      return reject(new HttpError(415, 'expected multipart/form-data'));
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        limits: { fileSize: limits.uploadBytes, files: limits.styles + 1, fields: 40, fieldSize: 4096, parts: limits.styles + 41 },
      });
    } catch (e) {
      return reject(new HttpError(400, `malformed multipart request (${(e as Error).message})`));
    }
    const files: Upload[] = [];
    const fields: [string, string][] = [];
    let failed: HttpError | undefined;
    const fail = (e: HttpError) => {
      failed ??= e;
    };
    bb.on('file', (field, stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => fail(new HttpError(413, `a file is larger than ${limits.uploadBytes} bytes`, field)));
      stream.on('end', () => files.push({ field, bytes: Buffer.concat(chunks) }));
    });
    bb.on('field', (field, value, info) => {
      if (info.valueTruncated) fail(new HttpError(413, 'is too long', field));
      fields.push([field, value]);
    });
    bb.on('filesLimit', () => fail(new HttpError(413, `at most ${limits.styles + 1} files`, 'style')));
    bb.on('fieldsLimit', () => fail(new HttpError(413, 'too many fields')));
    bb.on('partsLimit', () => fail(new HttpError(413, 'too many parts')));
    bb.on('error', (e: Error) => reject(new HttpError(400, `malformed multipart request (${e.message})`)));
    bb.on('close', () => (failed ? reject(failed) : resolve({ files, fields })));
    req.pipe(bb);
  });
}

/** Decodes an upload fully (bounded in pixels) so that a broken image is refused now, not on a worker. */
async function decodeCheck(f: Upload, limits: ApiLimits): Promise<{ width: number; height: number }> {
  try {
    const image = sharp(f.bytes, { limitInputPixels: limits.inputPixels, failOn: 'error' }).rotate();
    const { info } = await image.raw().toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    if (/pixel limit/i.test(msg)) throw new HttpError(413, `the image has more than ${limits.inputPixels} pixels`, f.field);
    throw new HttpError(400, `not an image this server can read (${msg})`, f.field);
  }
}

/** Server-sent events: `progress` when the job's state moves, `preview` with each new preview (a JPEG data URL), `end` when it is over. */
async function streamEvents(req: http.IncomingMessage, res: http.ServerResponse, job: RenderJob, options: ApiOptions): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  let closed = false;
  req.on('close', () => (closed = true));
  let last = '';
  let lastPreview = 0;
  let lastBeat = Date.now();
  while (!closed) {
    const fresh = await options.queue.getJob(job.id!);
    if (!fresh) break;
    const view = await describeJob(fresh);
    const text = JSON.stringify(view);
    if (text !== last) {
      send('progress', view);
      last = text;
    }
    const preview = view.preview as number;
    if (preview > lastPreview || (view.state === 'done' && lastPreview >= 0)) {
      const bytes = await options.store.get(previewKey(job.id!));
      if (bytes) send('preview', { iteration: view.iteration, image: `data:image/jpeg;base64,${Buffer.from(bytes).toString('base64')}` });
      lastPreview = view.state === 'done' ? -1 : preview;
    }
    if (view.state === 'done' || view.state === 'failed') {
      send('end', view);
      break;
    }
    if (Date.now() - lastBeat > 15_000) {
      res.write(': keep-alive\n\n');
      lastBeat = Date.now();
    }
    await new Promise((r) => setTimeout(r, options.eventsEveryMs ?? 500));
  }
  res.end();
}
