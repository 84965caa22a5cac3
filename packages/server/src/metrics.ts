import { Counter, Gauge, Registry } from 'prom-client';
import type { JobControl } from './job-control.js';
import { API_STATES } from './job-view.js';
import { queueCall, redisOf, type RenderQueue } from './queue.js';
import { liveWorkers, registryKeys } from './registry.js';

/**
 * GET /metrics, in Prometheus' text format. Everything is read at scrape
 * time from Redis, where the queue is and where every worker adds to the
 * counters (registry.ts), so any number of servers answer the same:
 * jobs by state, the queue's depth, each live worker's iterations per
 * second and images per hour, jobs completed and cancelled, failures by
 * error code, store errors by who met them.
 */
export function serviceMetrics(queue: RenderQueue, jobs: JobControl, serverStoreErrors: () => number) {
  const registry = new Registry();
  const redis = () => redisOf(queue);
  const counters = async () => (await (await redis()).hgetall(registryKeys.counters)) as Record<string, string>;
  let latest: Record<string, string> = {};

  new Gauge({
    name: 'nst_jobs',
    help: 'Jobs by state (queued counts those held by a worker for a batch; cancelled ones kept on record)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const c = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'completed', 'failed');
      const active = await jobs.list({ name: 'metrics', token: '', admin: true }, undefined, 10_000);
      const by = new Map(API_STATES.map((s) => [s, 0]));
      for (const v of active) by.set(v.state, (by.get(v.state) ?? 0) + 1);
      // The list is bounded; the queue's own counts are exact for the states it has.
      by.set('done', c.completed);
      for (const [state, n] of by) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'nst_queue_depth',
    help: 'Jobs waiting in the queue for a worker (waiting, prioritized and delayed)',
    registers: [registry],
    async collect() {
      const c = await queue.getJobCounts('waiting', 'prioritized', 'delayed');
      this.set(c.waiting + c.prioritized + c.delayed);
    },
  });
  const perWorker = (name: string, help: string, pick: (w: Awaited<ReturnType<typeof liveWorkers>>[number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['worker', 'host', 'backend'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const w of await liveWorkers(await redis())) this.set({ worker: w.id, host: w.host, backend: w.backend }, pick(w));
      },
    });
  perWorker('nst_worker_iterations_per_second', "A live worker's iterations per second over the last minute", (w) => w.iterationsPerSecond);
  perWorker('nst_worker_images_per_hour', "A live worker's images per hour since its first render", (w) => w.imagesPerHour);
  new Gauge({
    name: 'nst_workers',
    help: 'Live workers',
    registers: [registry],
    async collect() {
      this.set((await liveWorkers(await redis())).length);
    },
  });
  /** A counter whose value is Redis' (every worker adds to it); `latest` is read once per scrape. */
  const fromRedis = (name: string, help: string, labelNames: string[], values: () => [Record<string, string>, number][]) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, n] of values()) this.inc(labels, n);
      },
    });
  const prefixed = (prefix: string, label: string) => () =>
    Object.entries(latest)
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]): [Record<string, string>, number] => [{ [label]: k.slice(prefix.length) }, Number(v)]);
  fromRedis('nst_jobs_completed_total', 'Jobs completed', [], () => [[{}, Number(latest.completed ?? 0)]]);
  fromRedis('nst_jobs_cancelled_total', 'Jobs cancelled', [], () => [[{}, Number(latest.cancelled ?? 0)]]);
  fromRedis('nst_job_failures_total', 'Jobs failed for good, by error code', ['code'], prefixed('failed:', 'code'));
  fromRedis('nst_store_errors_total', 'Store operations that failed, by who met them', ['process'], () => [
    ...prefixed('store-errors:', 'process')().filter(([l]) => l.process !== 'server'),
    [{ process: 'server' }, serverStoreErrors()],
  ]);

  return {
    contentType: registry.contentType,
    text: () =>
      queueCall(async () => {
        latest = await counters();
        return registry.metrics();
      }),
  };
}
