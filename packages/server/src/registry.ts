import type { Redis } from 'ioredis';

/*
 * What the service keeps in Redis beside BullMQ's queue: the live workers
 * (a key each, with a time to live that their heartbeat renews), the
 * cancellations (a marker per job and a channel the workers listen on),
 * the jobs cancelled while queued (BullMQ forgets a removed job) and the
 * counters behind /metrics, which every worker adds to.
 */

/** What a worker tells of itself every heartbeat (GET /api/workers). */
export interface WorkerInfo {
  readonly id: string;
  readonly host: string;
  readonly backend: string;
  /** The GPU it renders on, when it does. */
  readonly gpu: string | null;
  /** The jobs it holds, and of those the ones it is rendering now. */
  readonly jobs: readonly string[];
  readonly rendering: readonly string[];
  /** When it started, and its last heartbeat (ms since the epoch). */
  readonly started: number;
  readonly heartbeat: number;
  readonly iterationsPerSecond: number;
  readonly imagesPerHour: number;
  readonly imagesDone: number;
}

export const registryKeys = {
  worker: (id: string) => `nst:worker:${id}`,
  workers: 'nst:worker:*',
  /** Set when a job is cancelled: a worker that holds it or takes it drops it. */
  cancel: (id: string) => `nst:cancel:${id}`,
  /** Where cancellations are announced, so that a worker rendering the job stops at once. */
  cancelChannel: 'nst:cancel',
  /** A job cancelled while queued: BullMQ removes it, this keeps what the API shows of it. */
  cancelled: (id: string) => `nst:cancelled:${id}`,
  /** The ids of those, by when they were cancelled. */
  cancelledIndex: 'nst:cancelled',
  /** Counters for /metrics: `completed`, `failed:<code>`, `cancelled`, `store-errors:<who>`. */
  counters: 'nst:counters',
} as const;

/** A worker's heartbeat lives this many heartbeats: a worker gone is missing from the list within that. */
export const HEARTBEAT_LIVES = 3;

/** The reason a cancelled job fails with on its worker (the API shows it as `cancelled`). */
export const CANCELLED = 'cancelled';

/** The live workers. */
export async function liveWorkers(redis: Redis): Promise<WorkerInfo[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', registryKeys.workers, 'COUNT', 200);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  return values
    .filter((v): v is string => v !== null)
    .map((v) => JSON.parse(v) as WorkerInfo)
    .sort((a, b) => a.started - b.started);
}

/** Adds to a counter for /metrics. */
export function count(redis: Redis, counter: string, by = 1): Promise<unknown> {
  return redis.hincrby(registryKeys.counters, counter, by);
}
