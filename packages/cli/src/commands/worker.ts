import { tmpdir } from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Command } from 'commander';
import { parseCount, parseNumber } from '@nst/job';
import { openStore, redisConnection, startWorker, whenConnected } from '@nst/server';
import { addPackingOptions, openEngine, packLimits, weightsFor, type PackingFlags } from '../engine-options.js';
import { nativeFlow } from './video.js';

interface WorkerFlags extends PackingFlags {
  store: string;
  checkpointEvery: string;
  lockSeconds: string;
  previewSeconds: string;
  storeWaitSeconds: string;
}

/** `nst worker`'s flags and action (main.ts names and describes the command). */
export function defineWorkerCommand(command: Command): void {
  command
    .requiredOption('--store <dir|s3://bucket/prefix>', "the server's store: a shared folder, or an S3 bucket")
    .option('--checkpoint-every <n>', 'checkpoint each job to the store every n iterations', '20')
    .option('--lock-seconds <s>', 'a job whose worker is silent this long goes to another worker', '30')
    .option('--preview-seconds <s>', 'write a preview of each job this often', '3')
    .option(
      '--store-wait-seconds <s>',
      'a finished result waits this long for a store that is full or read-only, then its job goes back to the queue (its attempts untouched)',
      '600',
    );
  addPackingOptions(command).action(async (flags: WorkerFlags) => {
    const log = (line: string) => process.stdout.write(`${line}\n`);
    const weights = await weightsFor(flags, log);
    const engine = await openEngine(flags, weights, log);
    const scratchDir = mkdtempSync(path.join(tmpdir(), 'nst-worker-'));
    try {
      const running = startWorker({
        store: openStore(flags.store).store,
        gpu: engine.backend.name === 'cuda' ? `cuda:${flags.gpu}` : undefined,
        connection: redisConnection(),
        engine,
        limits: packLimits(flags),
        scratchDir,
        checkpointEvery: parseCount(flags.checkpointEvery, 'checkpointEvery', 1),
        lockMs: Math.round(1000 * parseNumber(flags.lockSeconds, 'lockSeconds')),
        previewEveryMs: Math.round(1000 * parseNumber(flags.previewSeconds, 'previewSeconds')),
        storeWaitMs: Math.round(1000 * parseNumber(flags.storeWaitSeconds, 'storeWaitSeconds')),
        log,
        flow: nativeFlow(),
      });
      try {
        await whenConnected(running.worker);
      } catch (e) {
        await running.close().catch(() => undefined);
        throw e;
      }
      log(`worker ready: ${engine.backend.detail}; weights: ${weights.source}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      log('stopping: running jobs are checkpointed and go back to the queue');
      await running.close();
      log('stopped');
    } finally {
      engine.backend.dispose();
      rmSync(scratchDir, { recursive: true, force: true });
    }
  });
}
