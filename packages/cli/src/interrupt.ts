/**
 * Ctrl-C (SIGINT) and SIGTERM (kill, a service manager) during a render:
 * the first asks the render to stop, save the current image and a
 * checkpoint (its `signal` aborts) and exit 128 + the signal's number (130,
 * 143) as a shell would report the signal; a second one quits at once.
 */
export interface Interrupt {
  readonly signal: AbortSignal;
  /** The exit status the signal asks for (130 when none came: an interrupted render exits 130 anyway). */
  readonly exitStatus: () => number;
  /** Stops listening. */
  readonly dispose: () => void;
}

/** Listens for SIGINT and SIGTERM until disposed; `saving` says what the render saves (one line). */
export function onInterrupt(say: (line: string) => void, saving: string): Interrupt {
  const controller = new AbortController();
  let status = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGTERM' ? 143 : 130;
    if (controller.signal.aborted) process.exit(code);
    status = code;
    controller.abort();
    say(`interrupted (${signal}): saving ${saving} (again to quit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    exitStatus: () => status || 130,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
