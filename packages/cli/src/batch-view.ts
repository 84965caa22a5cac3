import type { BatchEvent, JobProgress } from '@nst/batch';
import { fmt, formatSeconds } from './progress.js';

/**
 * The one view of a whole batch: a status line (done, failed, the running
 * jobs' iterations, images per hour, ETA), redrawn in place on a terminal,
 * with a line per finished job above it; plain lines in logs; JSON events
 * with --json. A dry run lists what each job would do, then the plan.
 */
export function batchView(
  mode: 'json' | 'tty' | 'plain',
  write: (s: string) => void,
  options: { dryRun?: boolean } = {},
): (e: BatchEvent) => void {
  if (mode === 'json') return (e) => write(JSON.stringify(e) + '\n');
  let status = '';
  const line = (text: string) => write(mode === 'tty' ? `\r\x1b[2K${text}\n${status}` : `${text}\n`);
  let total = 0;
  return (e) => {
    switch (e.event) {
      case 'plan':
        // A run says only what the user may not expect: a job rendered again, or resumed. A dry run says everything.
        if (options.dryRun)
          line(
            `${e.job}: ${e.action}${e.action === 'fail' ? `: ${e.reason}` : `${e.output ? ` -> ${e.output}` : ''}${e.size ? ` (${e.size})` : ''}${e.reason ? `: ${e.reason}` : ''}`}`,
          );
        else if ((e.action === 'render' && e.reason) || e.action === 'resume')
          line(`${e.job}: ${e.action === 'render' ? 'rendering again' : 'resuming'}: ${e.reason}`);
        break;
      case 'dry-run':
        line(
          `plan: ${e.toRender} to render in ${e.batches.length} batch${e.batches.length === 1 ? '' : 'es'}${e.batches.map((b) => ` [${b.jobs.join(', ')} at ${b.size}]`).join('')}, ${e.skipped} up to date, ${e.failed} failing; nothing rendered (--dry-run)`,
        );
        break;
      case 'start':
        total = e.toRender;
        line(
          `${e.jobs} jobs: ${e.toRender} to render in ${e.batches} batch${e.batches === 1 ? '' : 'es'}, ${e.jobs - e.toRender} up to date or failed to load`,
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
              : e.status === 'skipped'
                ? `${e.job}: skipped: ${e.output} was made with the same settings and inputs`
                : `${e.job}: ${e.status}${e.output ? ` (${e.output})` : ''}`,
        );
        break;
      case 'progress': {
        const rate = e.imagesPerHour === null ? '-- img/h' : `${e.imagesPerHour} img/h`;
        status = `[${e.done}/${total} done, ${e.failed} failed${running(e.jobs)}] ${rate}  ETA ${e.etaSeconds === null ? '--' : formatSeconds(e.etaSeconds)}`;
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
        for (const f of e.failures) write(`  failed: ${f.job}${f.job === `line ${f.line}` ? '' : ` (line ${f.line})`}: ${f.error}\n`);
        break;
    }
  };
}

/** The running jobs and their iterations: `; running a, b at 37/200`; a long list is cut. */
function running(jobs: readonly JobProgress[]): string {
  if (jobs.length === 0) return '';
  const names =
    jobs.length > 3
      ? `${jobs
          .slice(0, 3)
          .map((j) => j.job)
          .join(', ')} +${jobs.length - 3}`
      : jobs.map((j) => j.job).join(', ');
  return `; running ${names} at ${jobs[0].iteration}/${jobs[0].iterations}`;
}
