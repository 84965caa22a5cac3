import { HttpError } from './errors.js';
import {
  describeCancelled,
  describeJob,
  progressOf,
  queueSnapshot,
  type ApiState,
  type CancelledRecord,
  type JobView,
  type QueueSnapshot,
} from './job-view.js';
import { queueCall, redisOf, type RenderJob, type RenderJobData, type RenderQueue } from './queue.js';
import { liveWorkers, registryKeys, type WorkerInfo } from './registry.js';
import { bullPriority } from './service-fields.js';
import type { ApiUser } from './users.js';

export interface JobControlOptions {
  readonly queue: RenderQueue;
  /** Attempts per job (a job that keeps failing ends as failed). */
  readonly attempts: number;
  /** How long finished jobs and their records are kept (default: the last 1000 of each, and cancellations 30 days). */
  readonly keepMs?: number;
}

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** How long a cancellation waits for the worker to stop the job before it answers. */
const CANCEL_WAIT_MS = 3000;
const QUEUED_STATES = ['waiting', 'prioritized', 'delayed'] as const;
/** BullMQ's states that may hold jobs of each API state. */
const BULL_STATES: Record<ApiState, readonly ('active' | 'waiting' | 'prioritized' | 'delayed' | 'completed' | 'failed')[]> = {
  queued: [...QUEUED_STATES, 'active'],
  running: ['active'],
  stalled: ['active'],
  done: ['completed'],
  failed: ['failed'],
  cancelled: ['failed'],
};
const ALL_STATES = ['active', ...QUEUED_STATES, 'completed', 'failed'] as const;

/**
 * The jobs as the API works on them, each user seeing only their own (an
 * admin sees all): adding with a priority and a per-user limit of queued
 * jobs, views in true states, lists with filters, cancel and retry, and
 * the live workers. Every Redis call is bounded (queueCall): a Redis that
 * is away makes them fail with a QueueUnavailableError (503).
 */
export function jobControl(o: JobControlOptions) {
  const { queue } = o;
  const redis = () => redisOf(queue);
  const keepSeconds = Math.round((o.keepMs ?? 30 * 86_400_000) / 1000);
  const removeAfter = o.keepMs ? { age: keepSeconds, count: 100_000 } : { count: 1000 };
  const enqueue = (id: string, data: RenderJobData) =>
    queue.add('render', data, {
      jobId: id,
      priority: bullPriority(data.service?.priority ?? 0),
      attempts: o.attempts,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: removeAfter,
      removeOnFail: removeAfter,
    });
  const visible = (user: ApiUser, owner: string | null | undefined) => user.admin || owner === user.name;

  const views = async (jobs: RenderJob[]): Promise<JobView[]> => {
    const r = await redis();
    // The queue's snapshot is read once, and only when a queued job needs its position.
    let snapshot: Promise<QueueSnapshot> | undefined;
    const snapshotOf = () => (snapshot ??= queue.getJobs(['active']).then((active) => queueSnapshot(r, active)));
    return Promise.all(jobs.map((j) => describeJob(r, j, snapshotOf)));
  };
  const cancelledRecord = async (id: string): Promise<CancelledRecord | undefined> => {
    const text = await (await redis()).get(registryKeys.cancelled(id));
    return text ? (JSON.parse(text) as CancelledRecord) : undefined;
  };
  /** The job (or its cancellation record) if `user` may see it; else 404, the same as for a job that never was. */
  const find = async (id: string, user: ApiUser): Promise<{ job?: RenderJob; record?: CancelledRecord }> => {
    if (JOB_ID.test(id)) {
      const job = await queue.getJob(id);
      if (job && visible(user, job.data.service?.owner)) return { job };
      const record = job ? undefined : await cancelledRecord(id);
      if (record && visible(user, record.data.service?.owner)) return { record };
    }
    throw new HttpError(404, `no job '${id.slice(0, 40)}'`, 'id');
  };
  const viewOf = async (found: { job?: RenderJob; record?: CancelledRecord }) =>
    found.job ? (await views([found.job]))[0] : describeCancelled(found.record!);

  /**
   * Marks a job cancelled: a queued one leaves the queue at once (its view is final), a running one's worker is
   * told on the cancel channel and stops it (the job then fails as `cancelled`). A job over already is a 409.
   */
  const askToCancel = (id: string, user: ApiUser) =>
    queueCall(async (): Promise<JobView> => {
      const found = await find(id, user);
      if (!found.job) return describeCancelled(found.record!);
      const job = found.job;
      const state = await job.getState();
      if (state === 'completed' || state === 'failed')
        throw new HttpError(409, `the job is ${(await views([job]))[0].state}: there is nothing to cancel`, 'id');
      const r = await redis();
      await r.set(registryKeys.cancel(id), '1', 'EX', keepSeconds);
      if ((QUEUED_STATES as readonly string[]).includes(state)) {
        const removed = await job.remove().then(
          () => true,
          () => false, // a worker took it meanwhile: it hears of the cancellation below
        );
        if (removed) {
          const record: CancelledRecord = { id, data: job.data, submitted: job.timestamp, cancelled: Date.now() };
          await r
            .multi()
            .set(registryKeys.cancelled(id), JSON.stringify(record), 'EX', keepSeconds)
            .zadd(registryKeys.cancelledIndex, record.cancelled, id)
            .hincrby(registryKeys.counters, 'cancelled', 1)
            .exec();
          return describeCancelled(record);
        }
      }
      await r.publish(registryKeys.cancelChannel, id);
      return (await views([job]))[0];
    });

  return {
    /** Queues a job for `user`, unless they have `limit` queued already (429). */
    add: (id: string, data: RenderJobData, user: ApiUser, limit: number) =>
      queueCall(async () => {
        // Queued as the API says it: in the queue, or held by a worker that is not rendering it yet.
        const waiting = await queue.getJobs([...QUEUED_STATES, 'active'], 0, -1);
        const mine = waiting.filter((j) => j.data.service?.owner === user.name && !progressOf(j).rendering).length;
        if (mine >= limit)
          throw new HttpError(
            429,
            `you have ${mine} jobs queued, the most this server takes from one user: wait for some to run, or cancel some`,
          );
        await enqueue(id, data);
      }),

    view: (id: string, user: ApiUser) => queueCall(async () => viewOf(await find(id, user))),

    /** The job's view, or undefined when it is gone (the events feed's look). */
    peek: (id: string) =>
      queueCall(async () => {
        const job = await queue.getJob(id);
        if (job) return (await views([job]))[0];
        const record = await cancelledRecord(id);
        return record && describeCancelled(record);
      }),

    /** The jobs `user` may see, newest first, at most `limit`, in `state` when given. */
    list: (user: ApiUser, state: ApiState | undefined, limit: number) =>
      queueCall(async () => {
        const scan = Math.max(200, limit * 4);
        const jobs = (await queue.getJobs([...(state ? BULL_STATES[state] : ALL_STATES)], 0, scan - 1)).filter((j) =>
          visible(user, j.data.service?.owner),
        );
        let all = await views(jobs);
        if (!state || state === 'cancelled') {
          const r = await redis();
          const ids = await r.zrevrange(registryKeys.cancelledIndex, 0, scan - 1);
          const records = ids.length ? await r.mget(...ids.map(registryKeys.cancelled)) : [];
          for (const text of records) {
            const record = text ? (JSON.parse(text) as CancelledRecord) : undefined;
            if (record && visible(user, record.data.service?.owner)) all.push(describeCancelled(record));
          }
        }
        if (state) all = all.filter((v) => v.state === state);
        return all.sort((a, b) => (b.submitted as number) - (a.submitted as number)).slice(0, limit);
      }),

    /** Cancels a job (askToCancel) and answers with its state once its worker has stopped it, or after CANCEL_WAIT_MS. */
    cancel: async (id: string, user: ApiUser): Promise<JobView> => {
      const asked = await askToCancel(id, user);
      if (asked.state === 'cancelled') return asked;
      // A worker stops the job within 2 s: answer with the outcome (a dead worker's job stays as it is until another takes it).
      const end = Date.now() + CANCEL_WAIT_MS;
      for (;;) {
        await new Promise((r) => setTimeout(r, 100));
        const now = await queueCall(async () => viewOf(await find(id, user)));
        if (now.state === 'cancelled' || Date.now() > end) return now;
      }
    },

    /**
     * Runs a failed or cancelled job again, its attempts counted afresh. It resumes from its checkpoint
     * when it has one (a cancelled job continues where it stopped) and keeps its loss curve so far.
     */
    retry: (id: string, user: ApiUser) =>
      queueCall(async () => {
        const found = await find(id, user);
        const r = await redis();
        await r.del(registryKeys.cancel(id));
        if (found.record) {
          const { data } = found.record;
          await enqueue(id, data);
          await r.multi().del(registryKeys.cancelled(id)).zrem(registryKeys.cancelledIndex, id).exec();
          return (await views([(await queue.getJob(id))!]))[0];
        }
        const job = found.job!;
        if ((await job.getState()) !== 'failed')
          throw new HttpError(409, `the job is ${(await views([job]))[0].state}: only a failed or cancelled job can be retried`, 'id');
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        return (await views([(await queue.getJob(id))!]))[0];
      }),

    /** What the job was submitted with (inputs by store key), also for a job cancelled while queued. */
    data: (id: string) => queueCall(async () => (await queue.getJob(id))?.data ?? (await cancelledRecord(id))?.data),

    workers: (): Promise<WorkerInfo[]> => queueCall(async () => liveWorkers(await redis())),
  };
}

export type JobControl = ReturnType<typeof jobControl>;
