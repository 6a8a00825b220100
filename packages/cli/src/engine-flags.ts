/**
 * The engine's scheduling and KV cache settings, as flags (mistral.rs's `--pa-*` names) and as
 * TOML keys, checked alike wherever they come from so a bad value fails before the model loads.
 */
import type { EngineOptions } from '@mistralrs/core';
import type { Argv } from 'yargs';

import { UsageError } from './usage-error.js';

/** What the command line and a TOML file may set of `Engine.load`'s options. */
export type EngineSettings = Pick<
  EngineOptions,
  'maxRunning' | 'maxWaiting' | 'prefixCaching' | 'blockSize' | 'kvTokens' | 'kvCacheMb' | 'kvCacheFraction' | 'kvCacheType' | 'speculative'
>;

type NumericSetting = Exclude<keyof EngineSettings, 'prefixCaching' | 'kvCacheType' | 'speculative'>;
type NumericFlag = Exclude<keyof EngineFlagArgs, 'prefix-cache' | 'pa-cache-type'>;

/** How the KV cache can store keys and values. */
export const KV_CACHE_TYPES = ['f16', 'q8_0'] as const;
type Rule = 'count' | 'mib' | 'fraction';

/** Each numeric setting: its flag, its TOML key, and the kind of number it takes. */
export const NUMERIC_SETTINGS: Readonly<Record<NumericSetting, { flag: NumericFlag; tomlKey: string; rule: Rule }>> = {
  maxRunning: { flag: 'max-running', tomlKey: 'max_running', rule: 'count' },
  maxWaiting: { flag: 'max-waiting', tomlKey: 'max_waiting', rule: 'count' },
  blockSize: { flag: 'pa-blk-size', tomlKey: 'pa_blk_size', rule: 'count' },
  kvTokens: { flag: 'pa-ctxt-len', tomlKey: 'pa_ctxt_len', rule: 'count' },
  kvCacheMb: { flag: 'pa-gpu-mem', tomlKey: 'pa_gpu_mem', rule: 'mib' },
  kvCacheFraction: { flag: 'pa-gpu-mem-usage', tomlKey: 'pa_gpu_mem_usage', rule: 'fraction' },
};

/** Three ways to size one KV cache: giving two is ambiguous, so it is an error, not a precedence rule. */
export const KV_SIZE_SETTINGS: readonly NumericSetting[] = ['kvTokens', 'kvCacheMb', 'kvCacheFraction'];

const WANTED: Readonly<Record<Rule, string>> = {
  count: 'a positive integer',
  mib: 'a positive number of MiB',
  fraction: 'a fraction greater than 0 and at most 1',
};

/** Why `value` cannot be used for a setting of this rule, or undefined when it can. */
export function badValue(value: unknown, rule: Rule): string | undefined {
  const ok =
    typeof value === 'number' &&
    (rule === 'count'
      ? Number.isSafeInteger(value) && value >= 1
      : rule === 'mib'
        ? Number.isFinite(value) && value > 0
        : value > 0 && value <= 1);
  if (ok) return undefined;
  // yargs turns `--max-running abc` into NaN, which would only confuse as "got NaN".
  if (Number.isNaN(value)) return `must be ${WANTED[rule]}`;
  return `must be ${WANTED[rule]}, got ${typeof value === 'number' ? value : JSON.stringify(value)}`;
}

/** The flags, added to the shared run options. */
export function engineFlags<T>(y: Argv<T>) {
  return y
    .option('max-running', {
      alias: 'max-seqs',
      type: 'number',
      describe: "sequences generated together at most (default 16; --max-seqs is mistral.rs's name)",
    })
    .option('max-waiting', { type: 'number', describe: 'requests queued at most (default 64); the server answers more with 429' })
    .option('prefix-cache', {
      type: 'boolean',
      // No `default`: an explicit --no-prefix-cache must be told apart from a TOML file's value.
      defaultDescription: 'true',
      describe: 'reuse the KV blocks of earlier prompts with the same prefix (--no-prefix-cache turns it off)',
    })
    .option('pa-blk-size', { type: 'number', describe: 'tokens per KV cache block (default 32; prefix caching needs a multiple of 4)' })
    .option('pa-ctxt-len', { type: 'number', describe: "size the KV cache in tokens (default: the model's context, at most 8192)" })
    .option('pa-gpu-mem', { type: 'number', describe: 'size the KV cache in MiB (on the CPU this is RAM)' })
    .option('pa-gpu-mem-usage', {
      type: 'number',
      describe: 'size the KV cache as this fraction (0 to 1] of the memory free at load (RAM on the CPU)',
    })
    .option('pa-cache-type', {
      type: 'string',
      choices: KV_CACHE_TYPES,
      describe: "how the KV cache stores keys and values: f16 (default, llama.cpp's arithmetic) or q8_0 (about half the memory per token)",
    })
    .group(
      ['max-running', 'max-waiting', 'prefix-cache', 'pa-blk-size', 'pa-ctxt-len', 'pa-gpu-mem', 'pa-gpu-mem-usage', 'pa-cache-type'],
      'Scheduling and KV cache:',
    );
}

/** The parsed flags: yargs gives both spellings; the kebab-case ones are read. */
export interface EngineFlagArgs {
  'max-running'?: number | undefined;
  'max-waiting'?: number | undefined;
  'prefix-cache'?: boolean | undefined;
  'pa-blk-size'?: number | undefined;
  'pa-ctxt-len'?: number | undefined;
  'pa-gpu-mem'?: number | undefined;
  'pa-gpu-mem-usage'?: number | undefined;
  'pa-cache-type'?: string | undefined;
}

/**
 * The flags over `fromToml` (already checked where it was read). A flag that sizes the KV cache
 * replaces the file's size, whichever way each gives it. Throws a message naming the flag.
 */
export function engineSettings(args: EngineFlagArgs, fromToml: EngineSettings = {}): EngineSettings {
  const flags: EngineSettings = {};
  for (const key of Object.keys(NUMERIC_SETTINGS) as NumericSetting[]) {
    const { flag, rule } = NUMERIC_SETTINGS[key];
    const value = args[flag];
    if (value === undefined) continue;
    const problem = badValue(value, rule);
    if (problem) throw new UsageError(`--${flag} ${problem}`);
    flags[key] = value;
  }
  if (args['prefix-cache'] !== undefined) flags.prefixCaching = args['prefix-cache'];
  const cacheType = args['pa-cache-type'];
  if (cacheType !== undefined) {
    if (!(KV_CACHE_TYPES as readonly string[]).includes(cacheType)) {
      throw new UsageError(`--pa-cache-type must be one of ${KV_CACHE_TYPES.join(', ')}, got ${cacheType}`);
    }
    flags.kvCacheType = cacheType as (typeof KV_CACHE_TYPES)[number];
  }
  const sizes = KV_SIZE_SETTINGS.filter((key) => flags[key] !== undefined);
  if (sizes.length > 1) {
    throw new UsageError(`${sizes.map((key) => `--${NUMERIC_SETTINGS[key].flag}`).join(' and ')} each size the KV cache; give one of them`);
  }
  const base = { ...fromToml };
  if (sizes.length > 0) for (const key of KV_SIZE_SETTINGS) delete base[key];
  return { ...base, ...flags };
}
