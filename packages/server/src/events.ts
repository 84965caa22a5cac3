import type http from 'node:http';
import type { JobView } from './job-view.js';
import { previewKey } from './queue.js';
import type { BlobStore } from './store.js';

export interface JobFeedOptions {
  /** A job's view now, or undefined when it is gone. */
  readonly describe: (jobId: string) => Promise<JobView | undefined>;
  readonly store: BlobStore;
  /** How often a watched job is looked at. */
  readonly everyMs: number;
  /** Bytes a watcher's connection may hold unsent before news for it is held back. */
  readonly bufferBytes: number;
  /** How long a watcher may take nothing before it is disconnected. */
  readonly stallMs: number;
  readonly log: (line: string) => void;
}

/** One client of GET /api/jobs/:id/events. */
interface Watcher {
  readonly res: http.ServerResponse;
  /** The last `progress` message it was sent, the number of the last preview, and when it was last written to. */
  progress?: Buffer;
  preview: number;
  wrote: number;
  /** Since when its connection has held more than bufferBytes. */
  stalledSince?: number;
}

/**
 * What is known of one watched job, as the messages a watcher is sent:
 * Buffers, made once and written to every watcher, so that a message held
 * for many slow connections is in memory once.
 */
interface Feed {
  readonly watchers: Set<Watcher>;
  progress?: Buffer;
  /** Counts the previews read from the store; `previewMessage` is the last. */
  previews: number;
  previewMessage?: Buffer;
  /** The job's preview counter (from its progress) when it was last read. */
  previewSeen: number;
  end?: Buffer;
}

const message = (event: string, data: unknown) => Buffer.from(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
const KEEP_ALIVE = Buffer.from(': keep-alive\n\n');
const KEEP_ALIVE_MS = 15_000;

/**
 * Server-sent events for watched jobs: `progress` when a job's state moves,
 * `preview` with each new preview (a JPEG data URL), `end` when it is over.
 * Each job is looked at once per period however many watch it, and each
 * watcher is sent only what its connection can take: a watcher that does not
 * read gets no more until it has taken what it holds (then the latest news,
 * not what it missed), and is disconnected when it takes nothing for
 * `stallMs`. So a watcher costs at most its buffer and one message, whatever
 * it does.
 */
export function jobFeeds(o: JobFeedOptions): (res: http.ServerResponse, jobId: string) => void {
  const feeds = new Map<string, Feed>();

  const look = async (feed: Feed, jobId: string) => {
    const view = await o.describe(jobId);
    if (!view) {
      feed.end = message('end', { id: jobId, state: 'failed', error: 'the job is gone' });
      return;
    }
    const progress = message('progress', view);
    if (!feed.progress?.equals(progress)) feed.progress = progress;
    const done = view.state === 'done';
    // A done job's preview is read once more: the worker writes its last one as the job ends.
    if ((view.preview as number) > feed.previewSeen || (done && feed.previewSeen >= 0)) {
      const bytes = await o.store.get(previewKey(jobId));
      if (bytes) {
        feed.previews++;
        feed.previewMessage = message('preview', {
          iteration: view.iteration,
          image: `data:image/jpeg;base64,${Buffer.from(bytes).toString('base64')}`,
        });
      }
      feed.previewSeen = done ? -1 : (view.preview as number);
    }
    if (done || view.state === 'failed' || view.state === 'cancelled') feed.end = message('end', view);
  };

  const deliver = (feed: Feed, w: Watcher) => {
    const now = Date.now();
    if (w.res.writableLength > o.bufferBytes) {
      w.stalledSince ??= now;
      if (now - w.stalledSince > o.stallMs) w.res.destroy();
      return;
    }
    w.stalledSince = undefined;
    const send = (bytes: Buffer) => {
      w.res.write(bytes);
      w.wrote = now;
    };
    if (feed.progress && feed.progress !== w.progress) send((w.progress = feed.progress));
    if (feed.previewMessage && feed.previews > w.preview) {
      send(feed.previewMessage);
      w.preview = feed.previews;
    }
    if (feed.end) {
      w.res.end(feed.end);
      feed.watchers.delete(w);
    } else if (now - w.wrote > KEEP_ALIVE_MS) send(KEEP_ALIVE);
  };

  const run = async (feed: Feed, jobId: string) => {
    try {
      // A watcher that stalls keeps the feed going after the end until it takes the end or is disconnected.
      while (feed.watchers.size > 0) {
        if (!feed.end) await look(feed, jobId);
        for (const w of feed.watchers) deliver(feed, w);
        if (feed.watchers.size > 0) await new Promise((r) => setTimeout(r, o.everyMs));
      }
    } catch (e) {
      o.log(`events for job ${jobId}: ${(e as Error).message.split('\n')[0]}`);
      for (const w of feed.watchers) w.res.destroy();
    } finally {
      feeds.delete(jobId);
    }
  };

  return (res, jobId) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const w: Watcher = { res, preview: 0, wrote: Date.now() };
    let feed = feeds.get(jobId);
    if (!feed) {
      feed = { watchers: new Set([w]), previews: 0, previewSeen: 0 };
      feeds.set(jobId, feed);
      void run(feed, jobId);
    } else {
      feed.watchers.add(w);
      deliver(feed, w);
    }
    const f = feed;
    res.on('close', () => f.watchers.delete(w));
  };
}
