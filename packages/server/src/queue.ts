import { UserError, type LossValues } from '@nst/core';
import { Queue, type Job, type RedisOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { HttpError, withoutPaths } from './errors.js';

/** The BullMQ queue every server and worker of one deployment shares. */
export const QUEUE_NAME = 'nst-render';

/**
 * A queued render job: inputs by store key, the other options as text under
 * their job field names (what jobFromOptions takes). No path from a request
 * is in it: the worker makes its own. `service` is what the service keeps
 * about the job beside it (who asked, how urgent, their reference, the
 * uploads' names): none of it changes the picture, so none of it is a job
 * option (JOB_OPTIONS) or reaches the render.
 */
export interface RenderJobData {
  readonly content: string;
  readonly styles: readonly string[];
  /**
   * Spatial control: the masks' store keys by job field (styleMask and
   * styleRegion one per style, null for a style without; contentMask one).
   */
  readonly masks?: JobMasks<string>;
  readonly options: Readonly<Record<string, string>>;
  readonly service?: ServiceData;
  /** A video job (the content is a video file): what the API found in it when it was submitted. */
  readonly video?: VideoJobData;
}

/** A job's masks by job field: one per style (null: that style has none), contentMask one. */
export type JobMasks<T> = Readonly<Partial<Record<'styleMask' | 'styleRegion' | 'contentMask', readonly (T | null)[]>>>;

/** A video job's clip, as ffprobe saw it at submission. */
export interface VideoJobData {
  readonly frames: number;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
}

/** The service's own fields of a job (service-fields.ts describes those a request sets). */
export interface ServiceData {
  /** The name of the user whose token submitted it. */
  readonly owner: string;
  readonly priority: number;
  readonly clientRef?: string;
  /** The uploads' file names, as the user's browser or curl sent them. */
  readonly names: { readonly content: string; readonly styles: readonly string[]; readonly masks?: JobMasks<string> };
}

/** A point of a job's loss curve. */
export interface LossPoint {
  readonly iteration: number;
  readonly total: number;
}

/** What a worker reports while a job runs (BullMQ's job progress). */
export interface RenderProgress {
  readonly iteration: number;
  readonly iterations: number;
  readonly losses?: LossValues;
  /** Counts previews written to the store, so that watchers see a new one. */
  readonly preview?: number;
  /** The worker holding the job (its id in the worker registry). */
  readonly worker?: string;
  /** Whether the worker is rendering it (else it waits in the worker for a batch). */
  readonly rendering?: boolean;
  /** When this attempt started rendering (ms since the epoch). */
  readonly started?: number;
  /** Iterations per second of this attempt so far. */
  readonly rate?: number;
  /** The total loss so far, at most MAX_HISTORY points (thinned evenly as it grows). */
  readonly history?: readonly LossPoint[];
  /** A video job: its frames finished (stored), and how long each takes. */
  readonly frames?: VideoProgress;
}

/** Where a video job stands. */
export interface VideoProgress {
  readonly done: number;
  readonly total: number;
  /** The frame being rendered (0-based). */
  readonly current?: number;
  /** Mean seconds per frame after the first, this attempt. */
  readonly secondsPerFrame?: number;
  readonly etaSeconds?: number;
}

/** What a finished job returns. */
export interface RenderReturn {
  readonly result: string;
  /** The final losses (a video's: its last frame's, when this attempt rendered it). */
  readonly losses?: LossValues;
  readonly iterations: number;
  /** The scales rendered, coarse to fine (the last is the output size). */
  readonly scales: readonly { readonly size: string; readonly iterations: number }[];
  readonly history?: readonly LossPoint[];
  /** When its last attempt started rendering. */
  readonly started?: number;
}

/** Store keys of a job's outputs. */
export const resultKey = (id: string) => `results/${id}.png`;
export const previewKey = (id: string) => `previews/${id}.jpg`;
export const checkpointKey = (id: string) => `checkpoints/${id}.ckpt`;
/** A video job's result, and each of its finished frames (the record a new worker resumes from). */
export const videoResultKey = (id: string) => `results/${id}.mp4`;
export const frameKey = (id: string, file: string) => `frames/${id}/${file}`;

/** Redis connection options from REDIS_URL (redis://[:password@]host:port[/db]); BullMQ needs maxRetriesPerRequest null. */
export function redisConnection(url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'): RedisOptions {
  const u = new URL(url);
  if (u.protocol !== 'redis:') throw new Error(`REDIS_URL: expected redis://host:port, got '${url}'`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    db,
    maxRetriesPerRequest: null,
  };
}

export type RenderQueue = Queue<RenderJobData, RenderReturn>;
export type RenderJob = Job<RenderJobData, RenderReturn>;

/** How long a request may wait for Redis before it is answered 503. */
export const QUEUE_DEADLINE_MS = 4000;

/**
 * The queue as the API uses it. Its connection fails fast: with no offline
 * queue a command made while Redis is away fails at once instead of waiting
 * for Redis to come back (and then running late, after the request was
 * answered), and a command Redis does not answer fails after
 * QUEUE_DEADLINE_MS. Workers keep their own, patient connection.
 */
export function openQueue(connection: RedisOptions): RenderQueue {
  return new Queue<RenderJobData, RenderReturn>(QUEUE_NAME, {
    connection: { ...connection, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: QUEUE_DEADLINE_MS },
  });
}

/** Redis did not answer a request in time, or is away: the API answers 503. */
export class QueueUnavailableError extends Error {
  override readonly name = 'QueueUnavailableError';
  constructor(cause: unknown) {
    super(`the job queue (Redis) is not answering: ${withoutPaths((cause as Error)?.message?.split('\n')[0] ?? String(cause))}`, { cause });
  }
}

/** Runs `call` (queue commands) within `timeoutMs`; any failure but an HttpError, or lateness, is a QueueUnavailableError. */
export async function queueCall<T>(call: () => Promise<T>, timeoutMs = QUEUE_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([call(), late]);
  } catch (e) {
    // The caller's own refusals (not found, not allowed) pass; anything else is Redis failing.
    if (e instanceof HttpError) throw e;
    throw new QueueUnavailableError(e);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether Redis keeps the queue across a restart: undefined when it does
 * (appendonly yes), else a warning for the log. A Redis with snapshots only
 * loses the jobs queued since the last one; with neither, every job. A Redis
 * that refuses CONFIG (a managed one) cannot be checked: the warning says so.
 */
export async function persistenceWarning(connection: RedisOptions): Promise<string | undefined> {
  const advice = 'set appendonly yes (README: nst serve)';
  const client = new Redis({ ...connection, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined); // the command below reports it
  try {
    await client.connect();
    const setting = async (name: string) => ((await client.config('GET', name)) as string[])[1] ?? '';
    const [save, appendonly] = [await setting('save'), await setting('appendonly')];
    if (appendonly === 'yes') return undefined;
    if (save.trim() === '')
      return `Redis has no persistence (save '' and appendonly no): a restart of Redis loses every queued job; ${advice}`;
    return `Redis keeps snapshots only (save '${save}', appendonly no): a restart of Redis loses the jobs queued since the last one; ${advice}`;
  } catch (e) {
    return `could not check Redis' persistence settings (CONFIG GET: ${withoutPaths((e as Error).message.split('\n')[0])}); make sure it has appendonly yes (README: nst serve)`;
  } finally {
    client.disconnect();
  }
}

/** Reports a queue's or worker's connection errors as one line each, not once per reconnection attempt. */
export function reportErrors(client: { on(event: 'error', listener: (e: Error) => void): unknown }, log: (line: string) => void): void {
  let last = '';
  client.on('error', (e) => {
    if (e.message !== last) log(`redis: ${e.message.split('\n')[0]}`);
    last = e.message;
  });
}

/** Waits until `client` (a queue or a worker) has reached Redis; a server that is not there is a UserError naming REDIS_URL. */
export async function whenConnected(client: { waitUntilReady(): Promise<unknown> }, timeoutMs = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new UserError(`no Redis server answered within ${timeoutMs / 1000} s (set REDIS_URL=redis://host:port)`, { code: 'unsupported' }),
        ),
      timeoutMs,
    );
  });
  try {
    await Promise.race([client.waitUntilReady(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The queue's own Redis connection (fails fast, as the API's should), for the service's keys beside BullMQ's. */
export const redisOf = (queue: RenderQueue): Promise<Redis> => queue.getBackend().client as unknown as Promise<Redis>;
