import type { LossValues } from '@nst/core';
import type { IterationReport } from '@nst/job';

/**
 * What the user sees while a render runs. Three modes:
 *   json - one JSON object per reported iteration on stdout, nothing else there
 *   tty  - a progress bar redrawn in place, report lines printed above it
 *   plain - one line per report (logs, pipes, CI)
 */
export interface ProgressView {
  info(line: string): void;
  report(r: IterationReport): void;
  progress(iteration: number, elapsedMs: number): void;
  saved(file: string, iteration: number): void;
  summary(s: Record<string, unknown>): void;
  done(): void;
}

export const fmt = (x: number) => (Math.abs(x) >= 1e5 || (Math.abs(x) < 1e-2 && x !== 0) ? x.toExponential(3) : x.toPrecision(5));

function lossText(l: LossValues, showTv: boolean): string {
  return `J ${fmt(l.total)}  J_content ${fmt(l.content)}  J_style ${fmt(l.style)}${showTv ? `  J_tv ${fmt(l.tv)}` : ''}`;
}

export function jsonView(write: (s: string) => void, info: (s: string) => void): ProgressView {
  return {
    info,
    report(r) {
      r.losses.forEach((l, item) => {
        const o: Record<string, unknown> = {
          iteration: r.iteration,
          total: l.total,
          content: l.content,
          style: l.style,
          tv: l.tv,
          elapsedMs: Math.round(r.elapsedMs),
        };
        if (r.losses.length > 1) o.item = item;
        write(JSON.stringify(o) + '\n');
      });
    },
    progress() {},
    saved() {},
    summary(s) {
      write(JSON.stringify({ summary: true, ...s }) + '\n');
    },
    done() {},
  };
}

export function plainView(write: (s: string) => void, total: number, showTv: boolean): ProgressView {
  // The first iteration reported (a resumed run starts where it stopped; its time from there).
  let first: number | undefined;
  return {
    info: (line) => write(line + '\n'),
    report(r) {
      first ??= r.iteration;
      const rate = r.iteration > first ? `  ${(r.elapsedMs / 1000 / (r.iteration - first)).toFixed(3)} s/it` : '';
      r.losses.forEach((l, item) =>
        write(
          `iteration ${String(r.iteration).padStart(String(total).length)}/${total}${r.losses.length > 1 ? ` [${item}]` : ''}  ${lossText(l, showTv)}${rate}\n`,
        ),
      );
    },
    progress() {},
    saved: (file) => write(`saved ${file}\n`),
    summary() {},
    done() {},
  };
}

export function ttyView(stream: NodeJS.WriteStream, total: number, showTv: boolean): ProgressView {
  let last: LossValues | undefined;
  let startIteration: number | undefined;
  let current = { iteration: 0, elapsedMs: 0 };
  let line = '';
  let finished = false;
  const draw = (iteration: number, elapsedMs: number) => {
    current = { iteration, elapsedMs };
    startIteration ??= iteration;
    const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - 70));
    const filled = Math.round((width * iteration) / Math.max(1, total));
    const done = iteration - startIteration;
    // Seconds per iteration, the one speed unit of every view and summary.
    const perIteration = done > 0 ? elapsedMs / 1000 / done : 0;
    const eta = perIteration > 0 ? formatSeconds((total - iteration) * perIteration) : '--';
    const losses = last ? `  J ${fmt(last.total)} Jc ${fmt(last.content)} Js ${fmt(last.style)}` : '';
    const speed = perIteration > 0 ? `${perIteration.toFixed(3)} s/it` : '-- s/it';
    line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${iteration}/${total}${losses}  ${speed}  ETA ${eta}`;
    stream.write(`\r\x1b[2K${line}`);
  };
  // Print a line above the bar, then redraw the bar under it (plain lines once the run is over).
  const above = (text: string) => stream.write(finished ? `${text}\n` : `\r\x1b[2K${text}\n${line}`);
  return {
    info: above,
    report(r) {
      last = r.losses[0];
      r.losses.forEach((l, item) => above(`iteration ${r.iteration}${r.losses.length > 1 ? ` [${item}]` : ''}  ${lossText(l, showTv)}`));
      // The report may describe an earlier iteration than the bar shows: keep the bar where it is.
      draw(Math.max(current.iteration, r.iteration), Math.max(current.elapsedMs, r.elapsedMs));
    },
    progress: draw,
    saved: (file) => above(`saved ${file}`),
    summary() {},
    done() {
      finished = true;
      stream.write('\n');
    },
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
