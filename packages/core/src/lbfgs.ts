/**
 * L-BFGS (Nocedal 1980; Liu & Nocedal 1989), neural-style's default
 * optimiser, with a strong-Wolfe line search (Nocedal & Wright, Numerical
 * Optimization, algorithms 3.5 and 3.6, cubic interpolation; the same
 * search as torch.optim.LBFGS(line_search_fn='strong_wolfe')).
 *
 * Why strong Wolfe rather than neural-style's fixed step of 1: the fixed
 * step diverges whenever the loss is scaled differently (another weight
 * set's input space, other alpha/beta), while the Wolfe search adapts the
 * step and guarantees s'y > 0, so every curvature pair it keeps is valid.
 *
 * The optimiser works on a host copy of x (float32, like the backends) and
 * any objective (x -> loss, gradient); dot products are summed in float64.
 * Its memory is 2 x history x |x| float32 (the pairs s, y) plus a few
 * vectors of |x|: lbfgsMemoryBytes() says how much.
 *
 * With `bounds` it keeps x inside a box (projected L-BFGS): the images are
 * clipped to the pixel range when written, so a step outside it is a step
 * the output never shows (unbounded, 4-6% of the channels of a 800x600
 * render ended outside 0..255, and the written image's style loss was 90x
 * the one reported). Each iteration holds the unknowns that sit on a bound
 * and are pushed outward, searches along the projected path P(x + t d)
 * (Bertsekas' sufficient decrease f(t) <= f(0) + c1 g'(P(x + t d) - x);
 * the slope counts only the components not clipped at t) and keeps the pair
 * (P(x + t d) - x, g(t) - g) when its curvature is positive. Without bounds
 * every step is the plain algorithm's.
 */

export interface LbfgsConfig {
  /** Curvature pairs kept (neural-style: 100). */
  readonly history: number;
  /** Sufficient-decrease constant of the Wolfe conditions. */
  readonly c1?: number;
  /** Curvature constant of the strong Wolfe conditions (smaller: a more exact line search). */
  readonly c2?: number;
  /** Most objective evaluations in one line search. */
  readonly maxLineSearch?: number;
  /** A box for x; none: unbounded. */
  readonly bounds?: LbfgsBounds;
}

/**
 * Per-channel bounds of interleaved data: x[i] stays in [lower[i % k],
 * upper[i % k]], k = lower.length (3 for the HWC images of ImageTensor).
 */
export interface LbfgsBounds {
  readonly lower: readonly number[];
  readonly upper: readonly number[];
}

export const DEFAULT_LBFGS: Required<Omit<LbfgsConfig, 'bounds'>> = { history: 100, c1: 1e-4, c2: 0.9, maxLineSearch: 25 };

/**
 * The vector arithmetic L-BFGS spends its own time in: the two-loop
 * recursion makes 4 x history passes over x per iteration (at 400x300 with
 * 100 pairs, about 225 ms in JavaScript, about a VGG evaluation). A backend
 * may supply faster ones with the same arithmetic (Session.vectorOps).
 */
export interface VectorOps {
  /** sum a[i] b[i], accumulated in float64 (each product exact). */
  dot(a: Float32Array, b: Float32Array): number;
  /** y[i] += alpha x[i] in place, computed in float64 and stored as float32. */
  axpy(alpha: number, x: Float32Array, y: Float32Array): void;
}

/** The objective: loss and gradient at x. `detail` is passed through (per-item losses, for reports). */
export type LbfgsObjective<D> = (x: Float32Array) => Promise<{ loss: number; gradient: Float32Array; detail: D }>;

/**
 * Bytes an L-BFGS run over n unknowns holds at its peak besides the
 * objective: the 2 x history pairs, and 11 vectors of n: x, g, the free
 * gradient, the recursion's q, d, the trial point, three gradients of the
 * line search (its bracket's ends and the newest trial), the next x and the
 * new pair being built (s, y) before the oldest is dropped.
 */
export function lbfgsMemoryBytes(history: number, n: number): number {
  return (2 * history + 11) * n * 4;
}

interface Point<D> {
  readonly t: number;
  readonly loss: number;
  readonly gradient: Float32Array;
  /** The slope of the loss along the (projected) path at t: g . d over the components not clipped. */
  readonly slope: number;
  /** g(0) . (x(t) - x): the first-order decrease the Armijo condition asks a fraction of (t g(0).d unbounded). */
  readonly decrease: number;
  readonly detail: D;
}

export class Lbfgs<D> {
  readonly config: Required<Omit<LbfgsConfig, 'bounds'>> & Pick<LbfgsConfig, 'bounds'>;
  /** The current iterate (owned by the optimiser; read it, do not write it). */
  readonly x: Float32Array;
  /** Objective evaluations so far (every line search trial counts). */
  evaluations = 0;
  /** Iterations done so far. */
  iterations = 0;
  /** The point last passed to the objective equals x (the objective may keep state, e.g. a device image). */
  lastEvaluatedIsX = false;
  /** Step of the last evaluation along the current direction (0: x itself). */
  private lastT = 0;
  private current?: { loss: number; gradient: Float32Array; detail: D };
  private readonly s: Float32Array[] = [];
  private readonly y: Float32Array[] = [];
  private readonly rho: number[] = [];

  constructor(
    x0: Float32Array,
    private readonly objective: LbfgsObjective<D>,
    config: LbfgsConfig,
    private readonly ops: VectorOps = JS_VECTOR_OPS,
  ) {
    this.config = { ...DEFAULT_LBFGS, ...config };
    if (!(Number.isInteger(this.config.history) && this.config.history >= 1))
      throw new RangeError('L-BFGS history must be a whole number >= 1');
    const b = this.config.bounds;
    if (b) {
      if (!(b.lower.length > 0 && b.lower.length === b.upper.length && b.lower.every((lo, c) => lo <= b.upper[c])))
        throw new RangeError('L-BFGS bounds need as many lower as upper values, each lower <= upper');
      // In float32, as x is: a clipped value then equals its bound exactly, and "on a bound" is an exact test.
      this.config = { ...this.config, bounds: { lower: b.lower.map(Math.fround), upper: b.upper.map(Math.fround) } };
    }
    this.x = Float32Array.from(x0);
    this.project(this.x); // a start outside the box begins at its nearest point
  }

  /** Loss, gradient and detail at x (evaluated once, then cached). */
  async state(): Promise<{ loss: number; gradient: Float32Array; detail: D }> {
    if (!this.current) {
      this.current = await this.objective(this.x);
      this.evaluations++;
      this.lastT = 0;
      this.lastEvaluatedIsX = true;
    }
    return this.current;
  }

  /** One iteration: a direction from the two-loop recursion, then a strong-Wolfe line search along it. */
  async step(): Promise<void> {
    const { loss, gradient: g } = await this.state();
    // Unknowns held on a bound do not take part: their gradient is left out
    // of the recursion and their component of d is zero.
    let d = this.withoutBlocked(this.direction(this.withoutBlocked(g, -1)), 1);
    let slope = dot(g, d);
    if (!(slope < 0)) {
      // Not a descent direction (the pairs went stale): forget them, go downhill.
      this.forget();
      d = this.withoutBlocked(negated(g), 1);
      slope = dot(g, d);
    }
    if (slope === 0) {
      this.iterations++; // at a stationary point: nothing to do
      return;
    }
    // The first step is scaled like torch's (min(1, 1/|g|_1)); later ones start at 1.
    const t0 = this.iterations === 0 && this.s.length === 0 ? Math.min(1, 1 / l1(g)) : 1;
    const accepted = await this.lineSearch(d, t0, { t: 0, loss, gradient: g, slope, decrease: 0, detail: this.current!.detail });
    if (accepted.t > 0) {
      const next = this.pointAt(accepted.t, d);
      const s = new Float32Array(d.length);
      const y = new Float32Array(d.length);
      for (let i = 0; i < d.length; i++) {
        s[i] = next[i] - this.x[i];
        y[i] = accepted.gradient[i] - g[i];
      }
      this.x.set(next);
      const ys = dot(y, s);
      if (ys > 1e-10) this.remember(s, y, 1 / ys);
      this.current = { loss: accepted.loss, gradient: accepted.gradient, detail: accepted.detail };
    } else {
      this.forget(); // no decrease along d: start afresh from -g next time
    }
    this.lastEvaluatedIsX = this.lastT === accepted.t;
    this.iterations++;
  }

  /** -H g by the two-loop recursion; H0 = (s'y / y'y) I from the newest pair. */
  private direction(g: Float32Array): Float32Array {
    const q = negated(g);
    const k = this.s.length;
    if (k === 0) return q;
    const a = new Float64Array(k);
    for (let i = k - 1; i >= 0; i--) {
      a[i] = this.rho[i] * this.ops.dot(this.s[i], q);
      this.ops.axpy(-a[i], this.y[i], q);
    }
    const yNew = this.y[k - 1];
    const gamma = 1 / (this.rho[k - 1] * this.ops.dot(yNew, yNew));
    for (let i = 0; i < q.length; i++) q[i] *= gamma;
    for (let i = 0; i < k; i++) {
      const b = this.rho[i] * this.ops.dot(this.y[i], q);
      this.ops.axpy(a[i] - b, this.s[i], q);
    }
    return q;
  }

  private remember(s: Float32Array, y: Float32Array, rho: number): void {
    if (this.s.length === this.config.history) {
      this.s.shift();
      this.y.shift();
      this.rho.shift();
    }
    this.s.push(s);
    this.y.push(y);
    this.rho.push(rho);
  }

  private forget(): void {
    this.s.length = 0;
    this.y.length = 0;
    this.rho.length = 0;
  }

  /** x + t d, projected onto the box. */
  private pointAt(t: number, d: Float32Array): Float32Array {
    const p = new Float32Array(this.x.length);
    for (let i = 0; i < p.length; i++) p[i] = this.x[i] + t * d[i];
    this.project(p);
    return p;
  }

  /** Clips v onto the box in place (nothing without bounds). */
  private project(v: Float32Array): void {
    const b = this.config.bounds;
    if (!b) return;
    const k = b.lower.length;
    for (let i = 0; i < v.length; i++) v[i] = Math.min(Math.max(v[i], b.lower[i % k]), b.upper[i % k]);
  }

  /**
   * v with zeros for the unknowns that sit on a bound and that a move along
   * `sign` x v would push outward (a direction: sign 1; a gradient, whose
   * descent is along -g: sign -1).
   */
  private withoutBlocked(v: Float32Array, sign: 1 | -1): Float32Array {
    const b = this.config.bounds;
    if (!b) return v;
    const k = b.lower.length;
    const out = Float32Array.from(v);
    for (let i = 0; i < v.length; i++) {
      const move = sign * v[i];
      if ((move < 0 && this.x[i] <= b.lower[i % k]) || (move > 0 && this.x[i] >= b.upper[i % k])) out[i] = 0;
    }
    return out;
  }

  private async trial(t: number, d: Float32Array, origin: Point<D>): Promise<Point<D>> {
    const trial = this.pointAt(t, d);
    const r = await this.objective(trial);
    this.evaluations++;
    this.lastT = t;
    if (!this.config.bounds) {
      return { t, loss: r.loss, gradient: r.gradient, slope: dot(r.gradient, d), decrease: t * origin.slope, detail: r.detail };
    }
    // Along the projected path a clipped component no longer moves.
    const b = this.config.bounds;
    const k = b.lower.length;
    const g0 = origin.gradient;
    let slope = 0;
    let decrease = 0;
    for (let i = 0; i < d.length; i++) {
      decrease += g0[i] * (trial[i] - this.x[i]);
      if (trial[i] > b.lower[i % k] && trial[i] < b.upper[i % k]) slope += r.gradient[i] * d[i];
    }
    return { t, loss: r.loss, gradient: r.gradient, slope, decrease, detail: r.detail };
  }

  /**
   * Strong Wolfe: finds t with f(t) <= f(0) + c1 t f'(0) and |f'(t)| <= c2 |f'(0)|.
   * Bracketing phase (extrapolate until the conditions hold or a bracket
   * is found), then zoom (cubic interpolation inside the bracket). Returns
   * the best point found; t = 0 when none decreased the loss.
   */
  private async lineSearch(d: Float32Array, t0: number, origin: Point<D>): Promise<Point<D>> {
    const { c1, c2, maxLineSearch } = this.config;
    const armijo = (p: Point<D>) => p.loss <= origin.loss + c1 * p.decrease;
    const curvature = (p: Point<D>) => Math.abs(p.slope) <= -c2 * origin.slope;
    let prev = origin;
    let point = await this.trial(t0, d, origin);
    let evals = 1;
    let bracket: [Point<D>, Point<D>] | undefined;
    while (evals < maxLineSearch) {
      if (!armijo(point) || (evals > 1 && point.loss >= prev.loss) || !Number.isFinite(point.loss)) {
        bracket = [prev, point];
        break;
      }
      if (curvature(point)) return point;
      if (point.slope >= 0) {
        bracket = [prev, point];
        break;
      }
      const t = cubicMinimum(prev, point, point.t + 0.01 * (point.t - prev.t), point.t * 10);
      prev = point;
      point = await this.trial(t, d, origin);
      evals++;
    }
    if (!bracket) bracket = [origin, point];

    // Zoom: keep lo the better end; shrink [lo, hi] until the conditions hold.
    let [lo, hi] = bracket[0].loss <= bracket[1].loss || !Number.isFinite(bracket[1].loss) ? bracket : [bracket[1], bracket[0]];
    let insufficientProgress = false;
    const dNorm = maxAbs(d);
    while (evals < maxLineSearch) {
      if (Math.abs(hi.t - lo.t) * dNorm < 1e-9) break;
      const left = Math.min(lo.t, hi.t);
      const right = Math.max(lo.t, hi.t);
      let t = Number.isFinite(hi.loss) ? cubicMinimum(lo, hi, left, right) : (left + right) / 2;
      // Stay away from the ends, or the bracket shrinks too slowly.
      const margin = 0.1 * (right - left);
      if (Math.min(right - t, t - left) < margin) {
        if (insufficientProgress || t >= right || t <= left) {
          t = Math.abs(t - right) < Math.abs(t - left) ? right - margin : left + margin;
          insufficientProgress = false;
        } else insufficientProgress = true;
      } else insufficientProgress = false;
      const p = await this.trial(t, d, origin);
      evals++;
      if (!armijo(p) || p.loss >= lo.loss || !Number.isFinite(p.loss)) {
        hi = p;
      } else {
        if (curvature(p)) return p;
        if (p.slope * (hi.t - lo.t) >= 0) hi = lo;
        lo = p;
      }
    }
    return lo.loss < origin.loss ? lo : origin;
  }
}

/**
 * The minimiser of the cubic through (a.t, a.loss, a.slope) and (b.t,
 * b.loss, b.slope), clamped to [lo, hi]; the middle when it has none.
 */
export function cubicMinimum(
  a: { t: number; loss: number; slope: number },
  b: { t: number; loss: number; slope: number },
  lo: number,
  hi: number,
): number {
  const d1 = a.slope + b.slope - (3 * (a.loss - b.loss)) / (a.t - b.t);
  const disc = d1 * d1 - a.slope * b.slope;
  if (!(disc >= 0)) return (lo + hi) / 2;
  const d2 = Math.sqrt(disc);
  const [p, q] = a.t <= b.t ? [a, b] : [b, a];
  const t = q.t - (q.t - p.t) * ((q.slope + d2 - d1) / (q.slope - p.slope + 2 * d2));
  if (!Number.isFinite(t)) return (lo + hi) / 2;
  return Math.min(Math.max(t, lo), hi);
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function axpy(alpha: number, x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < y.length; i++) y[i] += alpha * x[i];
}

/** VectorOps in JavaScript (the default; native/src/vector_ops.cc is the addon's twin). */
export const JS_VECTOR_OPS: VectorOps = { dot, axpy };

function negated(g: Float32Array): Float32Array {
  const out = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) out[i] = -g[i];
  return out;
}

function l1(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += Math.abs(g[i]);
  return s;
}

function maxAbs(g: Float32Array): number {
  let m = 0;
  for (let i = 0; i < g.length; i++) m = Math.max(m, Math.abs(g[i]));
  return m;
}
