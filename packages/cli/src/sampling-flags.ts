/**
 * How the chat and `--prompt` sample: llama.cpp's flag names (`--temperature`, `--top-k`, ...,
 * and DRY's `--dry-multiplier`, `--dry-base`, `--dry-allowed-length`, `--dry-penalty-last-n`,
 * `--dry-sequence-breaker`). Each value is checked here, so a bad one is a usage error before
 * the model loads. A server takes these per request instead.
 */
import { MAX_DRY_BREAKER_BYTES, type SamplingOptions } from '@mistralrs/core';
import type { Argv } from 'yargs';

import { UsageError } from './usage-error.js';

export function samplingFlags<T>(y: Argv<T>) {
  return y
    .option('temperature', { type: 'number', describe: 'sampling temperature; 0 (default) is greedy' })
    .option('top-k', { type: 'number', describe: 'sample from the k most likely tokens (0: all)' })
    .option('top-p', { type: 'number', describe: 'sample from the smallest set of tokens whose probability reaches p (0 < p ≤ 1)' })
    .option('min-p', { type: 'number', describe: 'drop tokens less likely than p times the most likely (0 to 1)' })
    .option('repetition-penalty', { type: 'number', describe: 'penalise tokens seen in the last 64 (1: off)' })
    .option('seed', { type: 'number', describe: 'makes sampling reproducible' })
    .option('dry-multiplier', { type: 'number', describe: 'DRY repetition penalty: multiplier (0, the default, is off)' })
    .option('dry-base', { type: 'number', describe: "DRY: base of the penalty's growth with the repeat's length (default 1.75)" })
    .option('dry-allowed-length', { type: 'number', describe: 'DRY: repeats this long go unpenalised beyond the multiplier (default 2)' })
    .option('dry-penalty-last-n', { type: 'number', describe: 'DRY: tokens searched for repeats (-1, the default: all; 0: off)' })
    .option('dry-sequence-breaker', {
      type: 'string',
      array: true,
      describe: 'DRY: text that ends a repeat (repeatable; replaces the defaults \\n : " *; "none" for no breakers)',
    })
    .group([...SAMPLING_FLAGS], 'Sampling (the chat and --prompt):');
}

export interface SamplingFlagArgs {
  temperature?: number | undefined;
  'top-k'?: number | undefined;
  'top-p'?: number | undefined;
  'min-p'?: number | undefined;
  'repetition-penalty'?: number | undefined;
  seed?: number | undefined;
  'dry-multiplier'?: number | undefined;
  'dry-base'?: number | undefined;
  'dry-allowed-length'?: number | undefined;
  'dry-penalty-last-n'?: number | undefined;
  'dry-sequence-breaker'?: Array<string | number> | undefined;
}

/** The flags' names, for refusing them where they do not apply. */
export const SAMPLING_FLAGS: ReadonlyArray<keyof SamplingFlagArgs> = [
  'temperature',
  'top-k',
  'top-p',
  'min-p',
  'repetition-penalty',
  'seed',
  'dry-multiplier',
  'dry-base',
  'dry-allowed-length',
  'dry-penalty-last-n',
  'dry-sequence-breaker',
];

type Check = (v: number) => boolean;
const RULES: ReadonlyArray<[Exclude<keyof SamplingFlagArgs, 'dry-sequence-breaker'>, keyof SamplingOptions, Check, string]> = [
  ['temperature', 'temperature', (v) => v >= 0, 'a number of at least 0'],
  ['top-k', 'topK', (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer'],
  ['top-p', 'topP', (v) => v > 0 && v <= 1, 'a number greater than 0 and at most 1'],
  ['min-p', 'minP', (v) => v >= 0 && v <= 1, 'a number from 0 to 1'],
  ['repetition-penalty', 'repetitionPenalty', (v) => v > 0, 'a number greater than 0'],
  ['seed', 'seed', (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer'],
  ['dry-multiplier', 'dryMultiplier', (v) => v >= 0, 'a number of at least 0'],
  ['dry-base', 'dryBase', (v) => v >= 1, 'a number of at least 1'],
  ['dry-allowed-length', 'dryAllowedLength', (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer'],
  ['dry-penalty-last-n', 'dryPenaltyLastN', (v) => Number.isSafeInteger(v) && v >= -1, '-1 (all tokens), 0 (off) or a positive integer'],
];

/** The sampling options the flags set; a `UsageError` naming the flag for a bad value. */
export function samplingFromFlags(args: SamplingFlagArgs): SamplingOptions {
  const options: Record<string, unknown> = {};
  for (const [flag, key, ok, wanted] of RULES) {
    const value = args[flag];
    if (value === undefined) continue;
    // yargs turns `--top-k abc` into NaN.
    if (!Number.isFinite(value) || !ok(value)) {
      throw new UsageError(`--${flag} must be ${wanted}${Number.isNaN(value) ? '' : `, got ${value}`}`);
    }
    options[key] = value;
  }
  const breakers = args['dry-sequence-breaker'];
  if (breakers !== undefined) options.drySequenceBreakers = readBreakers(breakers.map(String));
  return options as SamplingOptions;
}

/** `none` alone is no breakers (llama.cpp's spelling); `\n` written as two characters is a new line. */
function readBreakers(values: string[]): string[] {
  if (values.length === 1 && values[0] === 'none') return [];
  return values.map((raw) => {
    const breaker = raw.replace(/\\n/g, '\n');
    if (breaker.length === 0) throw new UsageError('--dry-sequence-breaker must not be empty');
    const bytes = Buffer.byteLength(breaker);
    if (bytes > MAX_DRY_BREAKER_BYTES) {
      throw new UsageError(
        `--dry-sequence-breaker ${JSON.stringify(raw)} has ${bytes} bytes; at most ${MAX_DRY_BREAKER_BYTES} are allowed`,
      );
    }
    if (breaker === 'none') throw new UsageError('--dry-sequence-breaker none means no breakers; it cannot be given with others');
    return breaker;
  });
}
