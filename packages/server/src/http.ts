import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { formatUserError, isUserError, kebabCase, UserError } from '@nst/core';
import { camelCase } from '@nst/batch';
import {
  frameName,
  INIT_KINDS,
  isInitKind,
  isVideoOption,
  jobFromOptions,
  JOB_OPTIONS,
  MASK_FIELDS,
  NO_MASK,
  optionsFor,
  planScales,
  videoTemplate,
} from '@nst/job';
import { checkImages, PixelGate } from './decode.js';
import { HttpError, withoutPaths } from './errors.js';
import { jobFeeds } from './events.js';
import { convertResult, RESULT_FORMATS, resultFormat, thumbnail } from './images.js';
import { jobControl, type JobControl } from './job-control.js';
import { API_STATES, type ApiState } from './job-view.js';
import { serviceMetrics } from './metrics.js';
import { readMultipart, type Upload } from './multipart.js';
import {
  QueueUnavailableError,
  frameKey,
  queueCall,
  redisOf,
  resultKey,
  videoResultKey,
  type JobMasks,
  type RenderQueue,
  type ServiceData,
} from './queue.js';
import { isServiceField, SERVICE_FIELDS, withoutControlCharacters } from './service-fields.js';
import { countingErrors, inputKey, isStoreUnavailable, type BlobStore } from './store.js';
import { authenticator, checkToken, type ApiUser } from './users.js';
import { checkVideo, isVideoUpload } from './video-upload.js';

export interface ApiLimits {
  /** Bytes per uploaded file. */
  readonly uploadBytes: number;
  /** Bytes of a whole request body. */
  readonly requestBytes: number;
  /** Pixels an uploaded image may have (decoded). */
  readonly inputPixels: number;
  /** Pixels the images of one request may have together. */
  readonly requestPixels: number;
  /** Pixels being decoded at once, all requests together (bounds the memory decoding takes). */
  readonly decodingPixels: number;
  /** Pixels of the output. */
  readonly outputPixels: number;
  readonly iterations: number;
  readonly styles: number;
  /** Attempts per job (a job that keeps failing ends as failed). */
  readonly attempts: number;
  /** Jobs one user may have queued at once. */
  readonly queuedPerUser: number;
  /** A video upload (content): its frames, seconds and pixels per frame (its bytes: uploadBytes). */
  readonly videoFrames: number;
  readonly videoSeconds: number;
  readonly videoPixels: number;
}

export const DEFAULT_API_LIMITS: ApiLimits = {
  uploadBytes: 20 * 2 ** 20,
  requestBytes: 64 * 2 ** 20,
  inputPixels: 40_000_000,
  requestPixels: 100_000_000,
  decodingPixels: 64_000_000,
  outputPixels: 1024 * 1024,
  iterations: 5000,
  styles: 8,
  attempts: 3,
  queuedPerUser: 100,
  videoFrames: 600,
  videoSeconds: 60,
  videoPixels: 1920 * 1080,
};

export interface ApiOptions {
  readonly store: BlobStore;
  readonly queue: RenderQueue;
  /** One token for one user, `admin`, who sees everything (at least MIN_TOKEN_LENGTH characters)... */
  readonly token?: string;
  /** ... or a token per user (`nst serve --tokens FILE`): each sees only their own jobs, an admin all. */
  readonly users?: readonly ApiUser[];
  /** How long finished jobs, their records and their files are kept (`--keep-days`); default: the last 1000 jobs. */
  readonly keepMs?: number;
  readonly limits?: Partial<ApiLimits>;
  /** How often server-sent events look for news. */
  readonly eventsEveryMs?: number;
  /** How long an events client may read nothing before it is disconnected (30 s). */
  readonly eventsStallMs?: number;
  /** Where errors that are the server's own (a 500, a store or Redis failure) are logged in full; stderr by default. */
  readonly log?: (line: string) => void;
}

/** Job fields a request may set as text: the option table's for the HTTP API, less the uploaded files; the video ones only with a video. */
const REQUEST_FIELDS = new Set<string>(optionsFor('http').filter((f) => !JOB_OPTIONS[f].upload));
/** The file fields of a request, as the API names them: the option table's uploads (content, style, the masks). */
const FILE_FIELDS = optionsFor('http')
  .filter((f) => JOB_OPTIONS[f].upload)
  .map((f) => kebabCase(f));

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
 * `Authorization: Bearer <token>`; a request is refused by its headers
 * (token, declared length) before its body is read, and a refused body is
 * never read: the connection is closed. Uploads are bounded, decoded and
 * checked before a job is queued; errors are one line of JSON naming the
 * field, with no path of the server in them.
 */
export function createApiServer(options: ApiOptions): http.Server {
  const users = options.users ?? (options.token !== undefined ? [{ name: 'admin', token: options.token, admin: true }] : []);
  if (users.length === 0) throw new Error('createApiServer: give a token or users');
  for (const u of users) checkToken(u.token);
  const limits = { ...DEFAULT_API_LIMITS, ...options.limits };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // Every upload is a new image: libvips' cache of decoded images would only hold memory.
  sharp.cache(false);
  const gate = new PixelGate(Math.max(limits.decodingPixels, limits.inputPixels));
  let storeErrors = 0;
  const store = countingErrors(options.store, () => storeErrors++);
  const jobs = jobControl({ queue: options.queue, attempts: limits.attempts, keepMs: options.keepMs });
  const metrics = serviceMetrics(options.queue, jobs, () => storeErrors);
  const watch = jobFeeds({
    describe: jobs.peek,
    store,
    everyMs: options.eventsEveryMs ?? 500,
    bufferBytes: 64 * 1024,
    stallMs: options.eventsStallMs ?? 30_000,
    log,
  });
  const web = webFiles();
  const authenticate = authenticator(users);

  const routes = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'GET' && url.pathname === '/healthz') return sendJson(res, ...(await health(options.queue, store)));
    if (parts[0] !== 'api' && url.pathname !== '/metrics') {
      const file = req.method === 'GET' ? web.get(url.pathname) : undefined;
      if (!file) throw new HttpError(404, 'not found');
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' }).end(file.body);
      return;
    }
    const user = authenticate(req.headers.authorization);
    if (!user) throw new HttpError(401, 'missing or wrong bearer token', 'authorization');
    if (url.pathname === '/metrics') {
      if (req.method !== 'GET' || !user.admin)
        throw new HttpError(user.admin ? 404 : 403, 'the metrics are for admin tokens', 'authorization');
      const text = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.contentType }).end(text);
      return;
    }
    if (parts.length > 4) throw new HttpError(404, `no route ${req.method} ${url.pathname.slice(0, 80)}`);
    const route = `${req.method} /${parts.slice(1, 2).join('/')}${parts.length > 2 ? '/:id' : ''}${parts.length > 3 ? `/${parts[3]}` : ''}`;
    const id = parts[2] ?? '';
    switch (route) {
      case 'POST /jobs':
        return sendJson(res, 201, { id: await submit(req, res, { store, jobs, user, limits, gate }) });
      case 'GET /jobs': {
        const state = url.searchParams.get('state');
        if (state !== null && !(API_STATES as readonly string[]).includes(state))
          throw new HttpError(400, `'${state.slice(0, 40)}' is not one of ${API_STATES.join(', ')}`, 'state');
        const limit = parseLimit(url.searchParams.get('limit'));
        return sendJson(res, 200, { jobs: await jobs.list(user, (state ?? undefined) as ApiState | undefined, limit) });
      }
      case 'GET /jobs/:id':
        return sendJson(res, 200, await jobs.view(id, user));
      case 'DELETE /jobs/:id':
      case 'POST /jobs/:id/cancel':
        return sendJson(res, 202, await jobs.cancel(id, user));
      case 'POST /jobs/:id/retry':
        return sendJson(res, 202, await jobs.retry(id, user));
      case 'GET /jobs/:id/result': {
        const view = await jobs.view(id, user);
        if (view.state !== 'done') throw new HttpError(409, `the job is ${view.state}, not done`, 'id');
        if ((await jobs.data(view.id))?.video) return sendVideo(res, view.id, url.searchParams.get('format'), store);
        const format = resultFormat(url.searchParams.get('format'));
        const bytes = await store.get(resultKey(view.id));
        if (!bytes) throw new HttpError(410, 'the result is no longer kept (it expired)', 'id');
        const out = await convertResult(bytes, format);
        res
          .writeHead(200, {
            'content-type': RESULT_FORMATS[format].type,
            'content-length': out.length,
            'content-disposition': `attachment; filename="nst-${view.id}.${RESULT_FORMATS[format].ext}"`,
          })
          .end(out);
        return;
      }
      case 'GET /jobs/:id/thumbnail': {
        const view = await jobs.view(id, user);
        const of = url.searchParams.get('of') ?? 'result';
        const data = (await jobs.data(view.id))!;
        // A video's content and result are shown by their first frames (the input's, the stylised one).
        const first = data?.video ? frameKey(view.id, frameName(0)) : undefined;
        const key =
          of === 'content'
            ? data?.video
              ? frameKey(view.id, `input-${frameName(0)}`)
              : data?.content
            : of === 'style'
              ? data?.styles[0]
              : of === 'result'
                ? (first ?? resultKey(view.id))
                : null;
        if (key === null) throw new HttpError(400, `'${of.slice(0, 40)}' is not one of content, style, result`, 'of');
        const bytes = key && (of !== 'result' || view.state === 'done') ? await thumbnail(store, key) : undefined;
        if (!bytes) throw new HttpError(404, `no ${of} image for this job (yet)`, 'of');
        res
          .writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length, 'cache-control': 'private, max-age=3600' })
          .end(bytes);
        return;
      }
      case 'GET /jobs/:id/events':
        return watch(res, (await jobs.view(id, user)).id);
      case 'GET /workers':
        return sendJson(res, 200, { workers: await jobs.workers() });
      default:
        throw new HttpError(404, `no route ${req.method} ${url.pathname.slice(0, 80)}`);
    }
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    routes(req, res).catch((e) => {
      if (res.headersSent) return res.destroy();
      const { status, body, headers } = errorResponse(e, log);
      if (req.complete) return sendJson(res, status, body, headers);
      closeUnread(req, res);
      sendJson(res, status, body, { ...headers, connection: 'close' });
    });
  };
  const server = http.createServer(handle);
  // A client that asks before sending its body (Expect: 100-continue) is answered by the same routes:
  // a refusal goes out before the body, and submit() sends the 100 when it starts reading.
  server.on('checkContinue', handle);
  return server;
}

/** The status and JSON body for an error: its own for HttpErrors and UserErrors, 507 or 503 for the store, 503 for Redis, else 500. */
function errorResponse(
  e: unknown,
  log: (line: string) => void,
): { status: number; body: Record<string, string>; headers: Record<string, string> } {
  if (e instanceof HttpError)
    return {
      status: e.status,
      body: {
        error: e.field && e.status !== 404 && e.status !== 401 ? `${e.field}: ${e.message}` : e.message,
        ...(e.field ? { field: e.field } : {}),
      },
      headers: {},
    };
  if (isUserError(e)) {
    const status = e.code === 'too-large' ? 413 : 400;
    return { status, body: { error: formatUserError(e, kebabCase), ...(e.field ? { field: kebabCase(e.field) } : {}) }, headers: {} };
  }
  const message = (e as Error)?.message?.split('\n')[0] ?? String(e);
  // The log is the server's own: there the cause is given in full, paths and all.
  const cause = (e as Error)?.cause as Error | undefined;
  log(`${(e as Error)?.name ?? 'error'}: ${message}${cause?.message ? ` (${cause.message.split('\n')[0]})` : ''}`);
  if (isStoreUnavailable(e))
    return { status: e.trouble === 'full' ? 507 : 503, body: { error: e.message }, headers: { 'retry-after': '60' } };
  if (e instanceof QueueUnavailableError) return { status: 503, body: { error: e.message }, headers: { 'retry-after': '10' } };
  return { status: 500, body: { error: `internal error: ${withoutPaths(message)}` }, headers: {} };
}

/** How long a refused request's connection stays half-open, unread, after the answer. */
const LINGER_MS = 2000;

/**
 * Closes the connection of a request refused before its body was read, and
 * reads no more of that body. Node would read the rest of it to throw it
 * away (its keep-alive path), or, with `connection: close`, destroy the
 * socket as soon as the answer is out: with the client's body unread, that
 * destroy is a reset, and a client still sending fails on its next write
 * and may never read the answer. So the body counts as consumed (Node
 * leaves it alone), and the socket stays half-closed and unread for
 * LINGER_MS: the client's sends stall, it reads the answer, then the
 * connection goes.
 */
function closeUnread(req: http.IncomingMessage, res: http.ServerResponse): void {
  const socket = req.socket;
  req.removeAllListeners('data');
  req.pause();
  req.read(0);
  res.once('finish', () => {
    socket.removeListener('finish', socket.destroy);
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** A video job's result: the .mp4 (`?format=` mp4 or none). */
async function sendVideo(res: http.ServerResponse, id: string, format: string | null, store: BlobStore): Promise<void> {
  if (format !== null && format.toLowerCase() !== 'mp4')
    throw new HttpError(400, `'${format.slice(0, 20)}' is not mp4 (a video job's result)`, 'format');
  const bytes = await store.get(videoResultKey(id));
  if (!bytes) throw new HttpError(410, 'the result is no longer kept (it expired)', 'id');
  res
    .writeHead(200, {
      'content-type': 'video/mp4',
      'content-length': bytes.length,
      'content-disposition': `attachment; filename="nst-${id}.mp4"`,
    })
    .end(bytes);
}

/** `?limit=`: how many jobs a list holds (50 by default, at most 500). */
function parseLimit(given: string | null): number {
  if (given === null) return 50;
  const n = Number(given);
  if (!Number.isInteger(n) || n < 1 || n > 500)
    throw new HttpError(400, `'${given.slice(0, 20)}' is not a whole number from 1 to 500`, 'limit');
  return n;
}

/** GET /healthz: whether Redis answers and the store can be read; 503 when either cannot. No token needed, nothing secret told. */
async function health(queue: RenderQueue, store: BlobStore): Promise<[number, Record<string, string>]> {
  const check = (probe: () => Promise<unknown>) =>
    probe().then(
      () => 'ok',
      () => 'unavailable',
    );
  const [redis, stored] = await Promise.all([
    check(() => queueCall(async () => (await redisOf(queue)).ping())),
    check(() => store.get('health/probe')),
  ]);
  const ok = redis === 'ok' && stored === 'ok';
  return [ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable', redis, store: stored }];
}

/** The name a multipart upload gave its file, kept for the job list: its last path segment, printable, at most 120 characters. */
function uploadName(u: Upload, fallback: string): string {
  const name = withoutControlCharacters(u.filename ?? '')
    .split(/[\\/]/)
    .pop()!
    .slice(0, 120);
  return name === '' ? fallback : name;
}

/** Reads a multipart job request, checks everything, stores the inputs and queues the job. */
async function submit(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  options: { store: BlobStore; jobs: JobControl; user: ApiUser; limits: ApiLimits; gate: PixelGate },
): Promise<string> {
  const { limits } = options;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limits.requestBytes) throw new HttpError(413, `the request is larger than ${limits.requestBytes} bytes`);
  if (/^100-continue$/i.test(req.headers.expect ?? '')) res.writeContinue();
  const { files, fields } = await readMultipart(req, {
    uploadBytes: limits.uploadBytes,
    requestBytes: limits.requestBytes,
    // The content, and per style its image, its mask and its region; the content mask.
    files: 3 * limits.styles + 2,
  });
  const content = files.filter((f) => f.field === 'content');
  const styles = files.filter((f) => f.field === 'style');
  if (content.length !== 1)
    throw new HttpError(400, content.length === 0 ? 'is required (one image file)' : 'expected one image file', 'content');
  if (styles.length === 0) throw new HttpError(400, 'is required (one or more image files)', 'style');
  if (styles.length > limits.styles) throw new HttpError(413, `at most ${limits.styles} style images`, 'style');
  for (const f of files)
    if (!FILE_FIELDS.includes(f.field)) throw new HttpError(400, `is not a file field (${FILE_FIELDS.join(', ')})`, f.field);
  // Masks: a file part per style in order (an empty part: none for that style), one content mask.
  const masks = new Map(MASK_FIELDS.map((field) => [field, files.filter((f) => f.field === kebabCase(field))] as const));
  const maskFiles = [...masks.values()].flat().filter((f) => f.bytes.length > 0);
  const contentMask = masks.get('contentMask')!;
  if (contentMask.length > 1) throw new HttpError(400, 'expected one image file', 'content-mask');
  if (contentMask.length === 1 && contentMask[0].bytes.length === 0) throw new HttpError(400, 'is empty (no image)', 'content-mask');

  const video = isVideoUpload(content[0].bytes);
  const values: Record<string, string> = {};
  const service: { priority?: number; clientRef?: string } = {};
  const seen = new Set<string>();
  for (const [key, value] of fields) {
    if (seen.has(key)) throw new HttpError(400, 'is given twice', key);
    seen.add(key);
    if (isServiceField(key)) {
      const parsed = SERVICE_FIELDS[key].parse(value, key);
      if (key === 'priority') service.priority = parsed as number;
      else service.clientRef = parsed as string;
      continue;
    }
    const field = camelCase(key);
    if (!REQUEST_FIELDS.has(field) || key !== kebabCase(field)) throw new HttpError(400, 'is not an option this server takes', key);
    if (field === 'init' && !isInitKind(value)) throw new HttpError(400, `expected ${INIT_KINDS.join(', ')}`, key);
    if (!video && isVideoOption(field as keyof typeof JOB_OPTIONS))
      throw new HttpError(400, 'is an option of video jobs (the content is an image)', key);
    values[field] = value;
  }
  if (video && maskFiles.length > 0)
    throw new HttpError(
      400,
      'masks are for image jobs (the content is a video)',
      kebabCase(MASK_FIELDS.find((f) => masks.get(f)!.length > 0)!),
    );
  // Checks every option where the CLI checks them, with stand-in paths (none from the request reaches a file system).
  const style = styles.map((_, k) => `style-${k}`);
  const standIns: Record<string, string[]> = {};
  for (const [field, parts] of masks)
    if (parts.length > 0) standIns[field] = parts.map((f, k) => (f.bytes.length === 0 ? NO_MASK : `${kebabCase(field)}-${k}`));
  const config = video
    ? videoTemplate({ ...values, style }, 'content', frameName(0))
    : jobFromOptions({ ...values, ...standIns, content: 'content', style, out: 'result.png' });
  const iterations = Math.max(config.iterations, config.firstFrameIterations ?? 0);
  if (iterations > limits.iterations)
    throw new UserError(`at most ${limits.iterations}`, {
      code: 'too-large',
      field: iterations > config.iterations ? 'firstFrameIterations' : 'iterations',
    });

  // A video is probed (frames, seconds, frame size against the limits), the style images decoded; an image is decoded with them.
  const clip = video ? await checkVideo(content[0], limits) : undefined;
  // The masks are decoded with the images (their sizes do not matter: each is resized to what it covers).
  const checked = (await checkImages(clip ? styles : [content[0], ...styles, ...maskFiles], limits, options.gate)).slice(
    0,
    (clip ? 0 : 1) + styles.length,
  );
  const [contentInfo, ...styleInfo] = clip ? [clip, ...checked] : checked;
  // The size, the scales and the style sizes are checked as for `nst render`, with the uploads' decoded sizes.
  const { size } = planScales(config, contentInfo, styleInfo);
  if (size.width * size.height > limits.outputPixels)
    throw new UserError(`${size.width}x${size.height} is more than ${limits.outputPixels} pixels`, { code: 'too-large', field: 'size' });

  // An input already stored is written again (the same bytes): its time is renewed, so that retention keeps what jobs still use.
  const store = async (f: Upload) => {
    const key = inputKey(f.bytes);
    await options.store.put(key, f.bytes);
    return key;
  };
  const maskKeys: Record<string, (string | null)[]> = {};
  const maskNames: Record<string, (string | null)[]> = {};
  for (const [field, parts] of masks) {
    if (parts.length === 0) continue;
    maskKeys[field] = await Promise.all(parts.map((f) => (f.bytes.length === 0 ? null : store(f))));
    maskNames[field] = parts.map((f, k) => (f.bytes.length === 0 ? null : uploadName(f, `${kebabCase(field)}-${k + 1}`)));
  }
  const masked = Object.keys(maskKeys).length > 0;
  const serviceData: ServiceData = {
    owner: options.user.name,
    priority: service.priority ?? SERVICE_FIELDS.priority.default,
    ...(service.clientRef !== undefined ? { clientRef: service.clientRef } : {}),
    names: {
      content: uploadName(content[0], 'content'),
      styles: styles.map((f, k) => uploadName(f, `style-${k + 1}`)),
      ...(masked ? { masks: maskNames as JobMasks<string> } : {}),
    },
  };
  const data = {
    content: await store(content[0]),
    styles: await Promise.all(styles.map(store)),
    ...(masked ? { masks: maskKeys as JobMasks<string> } : {}),
    options: { ...values, iterations: String(config.iterations) },
    service: serviceData,
    ...(clip ? { video: clip } : {}),
  };
  const id = randomUUID();
  await options.jobs.add(id, data, options.user, limits.queuedPerUser);
  return id;
}
