import { kebabCase } from '@nst/core';
import type { Redis } from 'ioredis';
import { withoutPaths } from './errors.js';
import { QUEUE_NAME, type RenderJob, type RenderJobData, type RenderProgress } from './queue.js';
import { CANCELLED, registryKeys } from './registry.js';

/**
 * What the API says a job is doing, true to what is happening:
 * - `queued`: not rendering yet: in the queue (with its position), held by a
 *   worker that waits to batch it, or handed back after a worker stopped;
 * - `running`: a live worker renders it;
 * - `stalled`: its worker is gone (its lock lapsed, or its heartbeat did)
 *   and no other worker has taken it yet;
 * - `done`, `failed`, `cancelled`.
 */
export type ApiState = 'queued' | 'running' | 'stalled' | 'done' | 'failed' | 'cancelled';
export const API_STATES: readonly ApiState[] = ['queued', 'running', 'stalled', 'done', 'failed', 'cancelled'];

/** A job cancelled while queued, as kept in Redis once BullMQ has removed it. */
export interface CancelledRecord {
  readonly id: string;
  readonly data: RenderJobData;
  readonly submitted: number;
  readonly cancelled: number;
}

/** The API's JSON for a job (keys as the API's fields are named: kebab-case). */
export type JobView = Record<string, unknown> & { id: string; state: ApiState; owner: string | null };

/** What is shared by the views of several jobs made at once: the counts that positions start from. */
export interface QueueSnapshot {
  /** Jobs that workers hold but do not render yet: they run before anything in the queue. */
  readonly held: number;
  /** Jobs in BullMQ's plain wait list (jobs without a priority), which run before prioritized ones. */
  readonly waiting: number;
}

export async function queueSnapshot(redis: Redis, activeJobs: readonly RenderJob[]): Promise<QueueSnapshot> {
  const held = activeJobs.filter((j) => !progressOf(j).rendering).length;
  return { held, waiting: await redis.llen(`bull:${QUEUE_NAME}:wait`) };
}

export const progressOf = (job: RenderJob): Partial<RenderProgress> =>
  (typeof job.progress === 'object' && job.progress !== null ? job.progress : {}) as Partial<RenderProgress>;

/** Whether a live worker holds an active job: its BullMQ lock is there and, when it says which worker, that worker's heartbeat too. */
async function heldByLiveWorker(redis: Redis, job: RenderJob): Promise<boolean> {
  const worker = progressOf(job).worker;
  const [lock, alive] = await Promise.all([
    redis.exists(`bull:${QUEUE_NAME}:${job.id}:lock`),
    worker ? redis.exists(registryKeys.worker(worker)) : Promise.resolve(1),
  ]);
  return lock === 1 && alive === 1;
}

/** A queued job's place in line: 1 runs next. Delayed jobs (waiting for the store) have none. */
async function positionOf(
  redis: Redis,
  job: RenderJob,
  bullState: string,
  snapshotOf: () => Promise<QueueSnapshot>,
): Promise<number | null> {
  if (bullState === 'active') return 1;
  if (bullState !== 'prioritized' && bullState !== 'waiting') return null;
  const snapshot = await snapshotOf();
  if (bullState === 'prioritized') {
    const rank = await redis.zrank(`bull:${QUEUE_NAME}:prioritized`, job.id!);
    return rank === null ? null : snapshot.held + snapshot.waiting + rank + 1;
  }
  if (bullState === 'waiting') {
    // BullMQ pushes on the left and takes from the right.
    const index = await redis.lpos(`bull:${QUEUE_NAME}:wait`, job.id!);
    return index === null ? null : snapshot.held + snapshot.waiting - index;
  }
  return null;
}

/** The service's fields and the settings, as the API names them. */
function described(id: string, data: RenderJobData, submitted: number): { id: string; owner: string | null } & Record<string, unknown> {
  const s = data.service;
  return {
    id,
    owner: s?.owner ?? null,
    'client-ref': s?.clientRef ?? null,
    priority: s?.priority ?? 0,
    // The masks' names by the API's field names (style-mask: one per style, null where a style has none).
    names: s?.names
      ? {
          ...s.names,
          ...(s.names.masks
            ? { masks: Object.fromEntries(Object.entries(s.names.masks).map(([field, names]) => [kebabCase(field), names])) }
            : {}),
        }
      : null,
    settings: data.options,
    submitted,
  };
}

/** A job's view; `snapshot` is asked for only when the job is queued (for its position). */
export async function describeJob(redis: Redis, job: RenderJob, snapshot: () => Promise<QueueSnapshot>): Promise<JobView> {
  const bullState = await job.getState();
  // A job read just before it completed has no return value yet, though its state now says completed: read it now.
  if (bullState === 'completed' && job.returnvalue == null) {
    const stored = await redis.hget(`bull:${QUEUE_NAME}:${job.id}`, 'returnvalue');
    if (stored) job.returnvalue = JSON.parse(stored);
  }
  const progress = progressOf(job);
  const iterations = Number(job.data.options.iterations ?? progress.iterations ?? 0);
  let state: ApiState;
  if (bullState === 'completed') state = 'done';
  else if (bullState === 'failed') state = job.failedReason === CANCELLED ? 'cancelled' : 'failed';
  else if (bullState === 'active') state = !(await heldByLiveWorker(redis, job)) ? 'stalled' : progress.rendering ? 'running' : 'queued';
  else state = 'queued';
  const done = state === 'done';
  // Where the job stands (a job handed back keeps the iteration its checkpoint holds until a worker takes it).
  const iteration = done ? (job.returnvalue?.iterations ?? iterations) : (progress.iteration ?? 0);
  const rate = state === 'running' ? (progress.rate ?? 0) : 0;
  return {
    ...described(job.id!, job.data, job.timestamp),
    state,
    position: state === 'queued' ? await positionOf(redis, job, bullState, snapshot) : null,
    worker: bullState === 'active' ? (progress.worker ?? null) : null,
    iteration,
    iterations,
    losses: done ? (job.returnvalue?.losses ?? null) : (progress.losses ?? null),
    'loss-history': done ? (job.returnvalue?.history ?? []) : (progress.history ?? []),
    scales: done ? (job.returnvalue?.scales ?? null) : null,
    error: state === 'failed' ? withoutPaths(job.failedReason ?? 'failed') : null,
    attempts: job.attemptsMade,
    started: done ? (job.returnvalue?.started ?? job.processedOn ?? null) : (progress.started ?? null),
    finished: job.finishedOn ?? null,
    eta: rate > 0 ? Math.round((iterations - iteration) / rate) : null,
    preview: progress.preview ?? 0,
    ...(job.data.video ? videoView(job.data.video.frames, done, state === 'running', progress) : {}),
  };
}

/** A video job's own fields: `frames` (done, total, the one rendering, seconds per frame) and its `eta` (to the last frame). */
function videoView(total: number, done: boolean, running: boolean, progress: Partial<RenderProgress>): Record<string, unknown> {
  const f = progress.frames;
  const eta = running && f?.etaSeconds !== undefined ? Math.round(f.etaSeconds) : null;
  return {
    frames: {
      total,
      done: done ? total : (f?.done ?? 0),
      current: running ? (f?.current ?? null) : null,
      'seconds-per-frame': f?.secondsPerFrame ?? null,
    },
    ...(done ? { eta: null } : { eta }),
  };
}

export function describeCancelled(record: CancelledRecord): JobView {
  return {
    ...described(record.id, record.data, record.submitted),
    state: 'cancelled',
    position: null,
    worker: null,
    iteration: 0,
    iterations: Number(record.data.options.iterations ?? 0),
    losses: null,
    'loss-history': [],
    scales: null,
    error: null,
    attempts: 0,
    started: null,
    finished: record.cancelled,
    eta: null,
    preview: 0,
  };
}
