import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_LOSS, type WeightSet } from '@nst/core';
import {
  MAX_SEED,
  RENDER_DEFAULTS,
  parseCount,
  parseLayerList,
  parseNumber,
  parseSize,
  prepareRender,
  runOptimisation,
  type RenderConfig,
} from '@nst/render';
import { ensureDefaultWeights, loadWeights } from '@nst/weights';
import { BACKEND_CHOICES, openBackend, type BackendChoice } from '../backends.js';
import { jsonView, plainView, ttyView, type ProgressView } from '../progress.js';

interface RenderFlags {
  content: string[];
  style: string[];
  styleBlendWeights?: string;
  styleScale?: string;
  out: string;
  size: string;
  iterations: string;
  alpha: string;
  beta: string;
  tvWeight: string;
  lr: string;
  contentLayers: string;
  styleLayers: string;
  pooling: string;
  init: string;
  noiseRatio: string;
  seed: string;
  printEvery: string;
  saveEvery: string;
  checkpointEvery: string;
  resume?: boolean;
  weights?: string;
  backend: string;
  precision: string;
  gpu: string;
  json?: boolean;
  yes?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const layerText = (layers: readonly { layer: string; weight: number }[]) => layers.map((l) => `${l.layer}:${l.weight}`).join(',');

export function registerRenderCommand(program: Command): void {
  const d = RENDER_DEFAULTS;
  program
    .command('render')
    .description('optimise an image to keep the content of one photo in the style of one or more paintings')
    .requiredOption('-c, --content <file>', 'content image (repeat for a batch: --out is then a folder)', collect)
    .requiredOption('-s, --style <file>', 'style image (repeat, or separate with commas, to blend several)', collect)
    .option('--style-blend-weights <w,...>', 'blend weights of the style images (default: equal)')
    .option('--style-scale <x>', "resize style images to x times the output's longest side (default: the output size)")
    .requiredOption('-o, --out <file>', 'output image (.png, .jpg, .webp, .tif); intermediate saves go to <stem>_<iteration><ext>')
    .option('--size <WxH|N>', 'output size: WIDTHxHEIGHT, or N = longest side keeping the aspect', '400x300')
    .option('-n, --iterations <n>', 'Adam iterations', String(d.iterations))
    .option('--alpha <x>', 'content weight (alpha)', String(DEFAULT_LOSS.alpha))
    .option('--beta <x>', 'style weight (beta)', String(DEFAULT_LOSS.beta))
    .option('--tv-weight <x>', 'total-variation weight (smoothness)', String(DEFAULT_LOSS.tvWeight))
    .option('--lr <x>', 'Adam learning rate, in pixel levels', String(d.adam.lr))
    .option('--content-layers <list>', 'content layers with weights', layerText(DEFAULT_LOSS.contentLayers))
    .option('--style-layers <list>', 'style layers with weights', layerText(DEFAULT_LOSS.styleLayers))
    .addOption(new Option('--pooling <kind>', 'pooling in the network').choices(['avg', 'max']).default('avg'))
    .option('--init <noise|content|random|file>', 'initial image', d.init)
    .option('--noise-ratio <x>', 'share of noise in the noise init', String(d.noiseRatio))
    .option('--seed <n>', 'random seed (same seed, same result on the same backend)', String(d.seed))
    .option('--print-every <n>', 'report losses every n iterations', String(d.printEvery))
    .option('--save-every <n>', 'save the image every n iterations (0: only the final)', String(d.saveEvery))
    .option('--checkpoint-every <n>', 'write a resumable checkpoint <out>.ckpt every n iterations (0: only on interrupt)', String(d.checkpointEvery))
    .option('--resume', 'continue from <out>.ckpt when it exists')
    .option('-w, --weights <path|random:SEED>', 'VGG-19 weights (default: $NST_WEIGHTS, else the cache of `nst weights fetch`)')
    .addOption(new Option('-b, --backend <name>', 'compute backend').choices(BACKEND_CHOICES as string[]).default('auto'))
    .addOption(new Option('--precision <p>', 'GPU arithmetic (cuda backend)').choices(['fp32', 'tf32', 'bf16']).default('tf32'))
    .option('--gpu <n>', 'GPU index (cuda backend)', '0')
    .option('--json', 'print one JSON object per reported iteration on stdout, then a summary')
    .option('-y, --yes', 'fetch the default weights without asking when none are installed')
    .action(async (flags: RenderFlags, cmd: Command) => {
      const debug = Boolean(cmd.optsWithGlobals().debug);
      await render(flags, debug);
    });
}

async function render(flags: RenderFlags, debug: boolean): Promise<void> {
  const config = parseConfig(flags);
  const total = config.iterations;
  const view: ProgressView = flags.json
    ? jsonView((s) => process.stdout.write(s), (s) => process.stderr.write(s + '\n'))
    : process.stdout.isTTY
      ? ttyView(process.stdout, total, config.loss.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), total, config.loss.tvWeight > 0);

  const weights = await chooseWeights(flags, view);
  const plan = await prepareRender(config, weights);
  const backend = await openBackend(
    flags.backend as BackendChoice,
    { precision: flags.precision as 'fp32' | 'tf32' | 'bf16', gpu: parseCount(flags.gpu, 'gpu') },
    (line) => view.info(line),
  );
  try {
    view.info(`backend: ${backend.detail}`);
    view.info(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    await backend.loadWeights(weights);
    const { width, height, batch } = { ...plan.session };
    view.info(`rendering ${width}x${height}${batch > 1 ? `, batch ${batch}` : ''}, ${total} iterations -> ${plan.outPaths.join(', ')}`);

    const controller = new AbortController();
    const onSigint = () => {
      if (controller.signal.aborted) process.exit(130);
      controller.abort();
      view.info('interrupted: saving the current image and a checkpoint (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    let result;
    try {
      result = await runOptimisation(backend, plan, {
        onReport: (r) => view.report(r),
        onProgress: (i, ms) => view.progress(i, ms),
        onSaved: (f, i) => view.saved(f, i),
        onResumed: (i) => view.info(`resumed from ${plan.checkpointPath} at iteration ${i}`),
      }, controller.signal);
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
      view.done();
    }
    const done = result.iterations - result.startIteration;
    view.summary({
      backend: backend.detail,
      size: `${width}x${height}`,
      width,
      height,
      batch,
      iterations: result.iterations,
      seconds: Number(result.seconds.toFixed(3)),
      secondsPerIteration: done > 0 ? Number((result.seconds / done).toFixed(4)) : null,
      interrupted: result.interrupted,
      output: result.outPaths.length === 1 ? result.outPaths[0] : result.outPaths,
      final: result.finalLosses.length === 1 ? result.finalLosses[0] : result.finalLosses,
    });
    if (!flags.json)
      view.info(
        `${result.interrupted ? 'stopped' : 'done'}: ${result.iterations} iterations in ${result.seconds.toFixed(1)} s` +
          (done > 0 ? ` (${(result.seconds / done).toFixed(3)} s/it)` : '') +
          `, wrote ${result.outPaths.join(', ')}` +
          (result.interrupted ? `; resume with --resume` : ''),
      );
    if (result.interrupted) process.exitCode = 130;
  } finally {
    backend.dispose();
  }
  void debug;
}

/** --weights, else NST_WEIGHTS or the cache, else offer to fetch (asks on a terminal; --yes fetches). */
async function chooseWeights(flags: RenderFlags, view: ProgressView): Promise<WeightSet> {
  const source = flags.weights ?? (await ensureDefaultWeights({ yes: flags.yes, log: (line: string) => view.info(line) }));
  return loadWeights(source);
}

export function parseConfig(f: RenderFlags): RenderConfig {
  const styles = f.style.flatMap((s) => (existsSync(s) ? [s] : s.split(',').map((x) => x.trim()).filter(Boolean)));
  return {
    contents: f.content,
    styles,
    styleBlendWeights:
      f.styleBlendWeights === undefined ? undefined : f.styleBlendWeights.split(',').map((w) => parseNumber(w, 'styleBlendWeights')),
    styleScale: f.styleScale === undefined ? undefined : parseNumber(f.styleScale, 'styleScale'),
    out: path.normalize(f.out),
    size: parseSize(f.size),
    iterations: parseCount(f.iterations, 'iterations'),
    adam: { ...RENDER_DEFAULTS.adam, lr: parseNumber(f.lr, 'lr') },
    loss: {
      contentLayers: parseLayerList(f.contentLayers, 'contentLayers'),
      styleLayers: parseLayerList(f.styleLayers, 'styleLayers'),
      alpha: parseNumber(f.alpha, 'alpha'),
      beta: parseNumber(f.beta, 'beta'),
      tvWeight: parseNumber(f.tvWeight, 'tvWeight'),
    },
    pooling: f.pooling as 'avg' | 'max',
    init: f.init,
    noiseRatio: parseNumber(f.noiseRatio, 'noiseRatio'),
    seed: parseCount(f.seed, 'seed', 0, MAX_SEED),
    printEvery: parseCount(f.printEvery, 'printEvery', 1),
    saveEvery: parseCount(f.saveEvery, 'saveEvery'),
    checkpointEvery: parseCount(f.checkpointEvery, 'checkpointEvery'),
    resume: Boolean(f.resume),
  };
}
