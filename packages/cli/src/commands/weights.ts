/**
 * `nst weights fetch | import | info`: obtaining VGG-19 weights, turning any
 * supported file into the cache, and showing what a file holds.
 */
import { existsSync } from 'node:fs';
import { Command, Option } from 'commander';
import { UserError } from '@nst/core';
import {
  PREPROCESSING_CHOICES,
  WEIGHT_SOURCES,
  cacheDir,
  cachePath,
  compareKernels,
  describePreprocessing,
  describeWeights,
  fetchWeightsDetailed,
  findSource,
  loadWeightsDetailed,
  preprocessingByName,
  weightsInfoJson,
  importToCache,
  askOnTerminal,
  EMBEDDED_SOURCE,
  WeightsError,
  WeightsUnreachableError,
} from '@nst/weights';

const out = (line: string) => process.stdout.write(`${line}\n`);

/** "535-575 MB": the sizes of the sources after the first. */
function largerSizes(): string {
  const sizes = WEIGHT_SOURCES.slice(1).map((s) => s.megabytes);
  return `${Math.min(...sizes)}-${Math.max(...sizes)} MB`;
}

/** `nst weights`' subcommands (main.ts names and describes the command). */
export function defineWeightsCommands(weights: Command): void {
  weights
    .command('fetch')
    .description('download VGG-19 weights (checksum-verified, resumable) into the cache')
    .addOption(
      new Option('--source <name>', 'which published file to download (default: keras, then the others with your consent)').choices(
        WEIGHT_SOURCES.map((s) => s.id),
      ),
    )
    .option('-y, --yes', 'do not ask before downloading')
    .option('--fallback', `if a source fails, go on to the next without asking (the others are ${largerSizes()})`)
    .option('--keep', 'keep the downloaded original in <cache>/downloads')
    .action(async (flags: { source?: string; yes?: boolean; fallback?: boolean; keep?: boolean }) => {
      const source = flags.source ? findSource(flags.source) : WEIGHT_SOURCES[0];
      const interactive = !flags.yes && process.stdin.isTTY === true && process.stderr.isTTY === true;
      if (interactive) {
        const ok = await askOnTerminal(`Download ${source.description} (${source.megabytes} MB) into ${cacheDir()}? [Y/n] `);
        if (!ok) throw new UserError('weights fetch: cancelled');
      }
      try {
        const result = await fetchWeightsDetailed({
          source: flags.source,
          keep: flags.keep,
          fallback: flags.fallback,
          ask: interactive ? (question) => askOnTerminal(question, false) : undefined,
        });
        out(
          `${result.cachePath}: ${result.stored.length} layers (${result.stored[0]} .. ${result.stored.at(-1)}) from ${result.source.fileName} (${describePreprocessing(result.set.preprocessing)})`,
        );
      } catch (e) {
        if (!(e instanceof WeightsUnreachableError)) throw e;
        // What happened, then the way forward, each on its line (the error's one-line form says the same).
        const [problem, ...ways] = e.lines;
        process.stderr.write(`nst: ${problem}\n${ways.map((w) => `  ${w}\n`).join('')}`);
        process.exitCode = 2;
      }
    });

  weights
    .command('import <file-or-dir>')
    .description('convert a weight file (TF.js, Keras .h5, MatConvNet .mat, PyTorch .pth, safetensors) into the cache')
    .addOption(new Option('--preprocessing <name>', 'override the detected input preprocessing').choices([...PREPROCESSING_CHOICES]))
    .option('--force', 'replace a cache that holds more layers than this file')
    .action(async (path: string, flags: { preprocessing?: string; force?: boolean }) => {
      const preprocessing = flags.preprocessing ? preprocessingByName(flags.preprocessing) : undefined;
      const { set } = await loadWeightsDetailed(path, { preprocessing });
      const stored = await importToCache(set, { force: flags.force }).catch((e: unknown) => {
        if (e instanceof WeightsError && e.reason === 'WEIGHTS_CACHE_DOWNGRADE')
          throw new UserError(`weights import: ${e.detail}; pass --force to replace it`, { cause: e });
        throw e;
      });
      const { layers } = stored;
      out(
        `${stored.path}: ${layers.length} layers (${layers[0]} .. ${layers.at(-1)}) from ${set.format} ${path} (${describePreprocessing(set.preprocessing)})`,
      );
    });

  weights
    .command('info [file-or-dir]')
    .description(
      `show the format, layers, shapes, preprocessing and checksum of a weight file (default: the cache, then the built-in set; '${EMBEDDED_SOURCE}' names the built-in set)`,
    )
    .option('--json', 'print one JSON object (one per set without an argument)')
    .action(async (path: string | undefined, flags: { json?: boolean }) => {
      const targets = path ? [path] : [...(existsSync(cachePath()) ? [cachePath()] : []), EMBEDDED_SOURCE];
      if (!path && targets.length === 1 && !flags.json)
        out(
          `no full VGG-19 in the cache (${cachePath()}): run \`nst weights fetch\` or \`nst weights import FILE\`; renders use the built-in set:\n`,
        );
      for (const [i, target] of targets.entries()) {
        const loaded = await loadWeightsDetailed(target);
        if (flags.json) out(JSON.stringify(weightsInfoJson(loaded)));
        else describeWeights(loaded).forEach(out);
        if (i < targets.length - 1 && !flags.json) out('');
      }
    });

  weights
    .command('compare <a> <b>')
    .description("which spatial symmetry / channel order maps a's kernels onto b's (e.g. a MatConvNet .mat against the Keras .h5)")
    .option('--layer <name>', 'the layer to compare', 'conv1_1')
    .action(async (a: string, b: string, flags: { layer: string }) => {
      const [wa, wb] = [await loadWeightsDetailed(a), await loadWeightsDetailed(b)];
      const la = wa.set.layers.find((l) => l.name === flags.layer);
      const lb = wb.set.layers.find((l) => l.name === flags.layer);
      if (!la || !lb) throw new UserError(`--layer ${flags.layer}: not in both weight sets`);
      for (const r of compareKernels(la, lb).slice(0, 4))
        out(`${r.relativeError.toExponential(2).padStart(9)}  ${r.symmetry}${r.channelsReversed ? ', input channels reversed' : ''}`);
    });
}
