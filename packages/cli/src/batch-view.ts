import type { BatchEvent } from '@nst/batch';
import { fmt, formatSeconds } from './progress.js';

/**
 * The one view of a whole batch: a status line (done, failed, running,
 * images per hour, ETA), redrawn in place on a terminal, with a line per
 * finished job above it; plain lines in logs; JSON events with --json.
 */
export function batchView(mode: 'json' | 'tty' | 'plain', write: (s: string) => void): (e: BatchEvent) => void {
  if (mode === 'json') return (e) => write(JSON.stringify(e) + '\n');
  let status = '';
  const line = (text: string) => write(mode === 'tty' ? `\r\x1b[2K${text}\n${status}` : `${text}\n`);
  let total = 0;
  return (e) => {
    switch (e.event) {
      case 'start':
        total = e.toRender;
        line(
          `${e.jobs} jobs: ${e.toRender} to render in ${e.batches} batch${e.batches === 1 ? '' : 'es'}, ${e.jobs - e.toRender} finished before or failed to load`,
        );
        break;
      case 'batch':
        line(
          `batch of ${e.jobs.length} at ${e.width}x${e.height}${e.startIteration > 0 ? `, resuming at iteration ${e.startIteration}` : ''}: ${e.jobs.join(', ')}`,
        );
        break;
      case 'job':
        line(
          e.status === 'failed'
            ? `${e.job}: failed: ${e.error}`
            : e.status === 'done'
              ? `${e.job}: done -> ${e.output} (J ${fmt(e.losses!.total)}, ${e.seconds!.toFixed(1)} s)`
              : `${e.job}: ${e.status}${e.output ? ` (${e.output})` : ''}`,
        );
        break;
      case 'progress': {
        const rate = e.imagesPerHour === null ? '-- img/h' : `${e.imagesPerHour} img/h`;
        status = `[${e.done}/${total} done, ${e.failed} failed, ${e.running} running] ${rate}  ETA ${e.etaSeconds === null ? '--' : formatSeconds(e.etaSeconds)}`;
        if (mode === 'tty') write(`\r\x1b[2K${status}`);
        break;
      }
      case 'summary':
        if (mode === 'tty') write('\r\x1b[2K');
        status = '';
        write(
          `${e.done} done, ${e.failed} failed, ${e.skipped} skipped, ${e.interrupted} interrupted in ${e.seconds.toFixed(1)} s` +
            `${e.imagesPerHour === null ? '' : ` (${e.imagesPerHour} images/hour)`}; results in ${e.results}\n`,
        );
        break;
    }
  };
}
