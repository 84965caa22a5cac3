/**
 * A vitest reporter that ends the run with what was skipped and why: every
 * skipped suite or test (the topmost one of a skipped subtree) and the lines
 * in which test files said why they skip (console output containing
 * "skipped"/"skipping"), so that a missing engine or data set is visible in
 * the summary rather than only as a count.
 */
import path from 'node:path';
import type { UserConsoleLog } from 'vitest';
import type { Reporter, TestModule, Vitest } from 'vitest/node';

export default class SkipSummary implements Reporter {
  private readonly reasons = new Set<string>();
  /** With a name filter (-t) most tests skip by request: nothing to report then. */
  private filtered = false;

  onInit(vitest: Vitest): void {
    this.filtered = vitest.config.testNamePattern !== undefined;
  }

  onUserConsoleLog(log: UserConsoleLog): void {
    for (const line of log.content.split('\n')) if (/\bskipp(ed|ing)\b/i.test(line)) this.reasons.add(line.trim());
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const skipped: string[] = [];
    for (const m of modules) {
      const file = path.relative(process.cwd(), m.moduleId);
      const parentSkipped = (p: { type: string; state?: () => string }) => p.type === 'suite' && p.state?.() === 'skipped';
      for (const s of m.children.allSuites())
        if (s.state() === 'skipped' && !parentSkipped(s.parent)) skipped.push(`${file} > ${s.fullName}`);
      for (const t of m.children.allTests('skipped')) {
        if (parentSkipped(t.parent)) continue;
        const r = t.result();
        const note = r.state === 'skipped' && r.note ? `: ${r.note}` : '';
        skipped.push(`${file} > ${t.fullName}${note}`);
      }
    }
    if (skipped.length === 0 || this.filtered) return;
    const out = ['', ` Skipped (${skipped.length}):`, ...skipped.map((s) => `   ${s}`)];
    if (this.reasons.size > 0) out.push(' Why, as the test files said:', ...[...this.reasons].map((r) => `   ${r}`));
    process.stdout.write(out.join('\n') + '\n');
  }
}
