// Just enough of vitest's API to run packages/native/test/cuda.test.ts on the
// lent GPU machine, which has Node (carried) but no node_modules: bundle.mjs
// aliases 'vitest' to this file. Tests run in order; a failure prints the
// assertion and makes the process exit non-zero.
const tests = [];
const prefix = [];

export function describe(name, fn) {
  prefix.push(name);
  try {
    fn();
  } finally {
    prefix.pop();
  }
}
describe.skipIf = (cond) => (name, fn) => {
  if (!cond) return describe(name, fn);
  tests.push({ name: [...prefix, name].join(' > '), skip: true });
};

export function it(name, fn) {
  tests.push({ name: [...prefix, name].join(' > '), fn });
}
export const test = it;

function fail(message) {
  throw new Error(message);
}

function matchers(actual, negate = false) {
  const check = (ok, text) => {
    if (ok === negate) fail(`expected ${negate ? 'not ' : ''}${text}`);
  };
  const show = (v) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
  return {
    toBe: (e) => check(Object.is(actual, e), `${show(actual)} to be ${show(e)}`),
    toEqual: (e) => check(JSON.stringify(actual) === JSON.stringify(e), `${show(actual)} to equal ${show(e)}`),
    toBeLessThan: (e) => check(actual < e, `${show(actual)} < ${e}`),
    toBeLessThanOrEqual: (e) => check(actual <= e, `${show(actual)} <= ${e}`),
    toBeGreaterThan: (e) => check(actual > e, `${show(actual)} > ${e}`),
    toBeGreaterThanOrEqual: (e) => check(actual >= e, `${show(actual)} >= ${e}`),
    toBeInstanceOf: (c) => check(actual instanceof c, `${show(actual)} to be an instance of ${c.name}`),
    toMatch: (re) =>
      check(typeof actual === 'string' && (re instanceof RegExp ? re.test(actual) : actual.includes(re)), `${show(actual)} to match ${re}`),
    toBeTruthy: () => check(Boolean(actual), `${show(actual)} to be truthy`),
    toThrow: (re) => {
      let thrown;
      try {
        actual();
      } catch (e) {
        thrown = e;
      }
      check(thrown !== undefined && (!re || re.test(thrown.message)), `a throw matching ${re}, got ${thrown?.message}`);
    },
  };
}

export function expect(actual) {
  const m = matchers(actual);
  m.not = matchers(actual, true);
  m.rejects = {
    toThrow: async (re) => {
      let thrown;
      try {
        await actual;
      } catch (e) {
        thrown = e;
      }
      if (thrown === undefined || (re && !re.test(thrown.message))) fail(`a rejection matching ${re}, got ${thrown?.message}`);
    },
  };
  return m;
}

/** Runs the registered tests; resolves to the number of failures. */
export async function runAll() {
  let failed = 0;
  let passed = 0;
  let skipped = 0;
  for (const t of tests) {
    if (t.skip) {
      skipped++;
      console.log(`SKIP ${t.name}`);
      continue;
    }
    const start = performance.now();
    try {
      await t.fn();
      passed++;
      console.log(`PASS ${t.name} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name}: ${e?.stack ?? e}`);
    }
  }
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed;
}
