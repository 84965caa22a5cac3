import type { Session } from './backend.js';
import { Lbfgs, type LbfgsConfig } from './lbfgs.js';
import type { LossValues } from './loss.js';

/**
 * An L-BFGS run over a session's images (every batch item at once: the
 * objective is the sum of their losses, whose gradient is the session's
 * gradient). Backends may provide their own (Session.startLbfgs, on the
 * device); hostLbfgs is the fallback that drives any session from the host.
 */
export interface LbfgsRun {
  /**
   * Runs `count` iterations and leaves the session's images at the new
   * iterate. Returns, per batch item, the loss of the images as they were
   * when the call began (as Session.iterate does).
   */
  iterate(count: number, onProgress?: (done: number) => void): Promise<LossValues[]>;
  /** Loss evaluations so far (each line-search trial counts). */
  readonly evaluations: number;
}

/**
 * Core's L-BFGS (packages/core/src/lbfgs.ts) on the host, starting from the
 * session's current images: each evaluation uploads the trial images
 * (setImages) and reads back the gradient (lossAndGradient). Its own
 * arithmetic uses the session's vectorOps when it has them.
 */
export async function hostLbfgs(session: Session, config: LbfgsConfig): Promise<LbfgsRun> {
  const x0 = await session.readImages();
  const optimiser = new Lbfgs<LossValues[]>(
    x0,
    async (x) => {
      await session.setImages(x);
      const { losses, gradient } = await session.lossAndGradient();
      return { loss: losses.reduce((sum, l) => sum + l.total, 0), gradient, detail: losses };
    },
    config,
    session.vectorOps,
  );
  return {
    get evaluations() {
      return optimiser.evaluations;
    },
    async iterate(count, onProgress) {
      const start = (await optimiser.state()).detail;
      for (let i = 0; i < count; i++) {
        await optimiser.step();
        onProgress?.(i + 1);
      }
      if (!optimiser.lastEvaluatedIsX) await session.setImages(optimiser.x);
      return start;
    },
  };
}

/** The session's own L-BFGS when its backend has one, else the host's. */
export function startLbfgs(session: Session, config: LbfgsConfig): Promise<LbfgsRun> {
  return session.startLbfgs ? session.startLbfgs(config) : hostLbfgs(session, config);
}
