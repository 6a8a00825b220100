/**
 * Speculative decoding's settings: flags (`--speculative ngram|draft`, `--draft-model`,
 * `--gamma`, …) and the TOML `[speculative]` table of mistral.rs's selector files:
 *
 *   [speculative]
 *   gamma = 4                       # tokens proposed per step at most
 *   [speculative.draft_model]       # a draft model sharing the tokenizer (kind = "draft")
 *   quantized_model_id = "…"        # or model_id, as in [model]
 *   quantized_filename = "….gguf"
 *
 * or `kind = "ngram"` (prompt lookup, with `ngram_min` and `ngram_max`). Both are checked
 * where they are read, so a bad value fails before a model loads.
 */
import type { SpeculativeOptions } from '@mistralrs/core';
import type { Argv } from 'yargs';

import { UsageError } from './usage-error.js';

export const SPECULATIVE_KINDS = ['ngram', 'draft'] as const;

export function speculativeFlags<T>(y: Argv<T>) {
  return y
    .option('speculative', {
      type: 'string',
      choices: SPECULATIVE_KINDS,
      describe: 'speculative decoding: ngram (prompt lookup, free) or draft (with --draft-model); the output is exactly the model’s',
    })
    .option('draft-model', {
      type: 'string',
      describe: 'the draft model (same tokenizer): a .gguf, a folder, a registry id or a Hub repository',
    })
    .option('draft-file', { type: 'string', describe: 'the .gguf inside a --draft-model folder or repository' })
    .option('gamma', { type: 'number', describe: 'tokens proposed per step at most (default 4)' })
    .option('draft-p-min', { type: 'number', describe: 'stop proposing at a draft guess less likely than this (0 to 1; default 0)' })
    .option('ngram-min', { type: 'number', describe: 'prompt lookup: the shortest n-gram that may match (default 2)' })
    .option('ngram-max', { type: 'number', describe: 'prompt lookup: the longest n-gram, tried first (default 4)' })
    .group(['speculative', 'draft-model', 'draft-file', 'gamma', 'draft-p-min', 'ngram-min', 'ngram-max'], 'Speculative decoding:');
}

export interface SpeculativeFlagArgs {
  speculative?: string | undefined;
  'draft-model'?: string | undefined;
  'draft-file'?: string | undefined;
  gamma?: number | undefined;
  'draft-p-min'?: number | undefined;
  'ngram-min'?: number | undefined;
  'ngram-max'?: number | undefined;
}

/** What a source of settings gave: a kind, where the draft is, and the numbers. */
interface Given {
  kind?: string | undefined;
  draftModel?: string | undefined;
  draftFile?: string | undefined;
  gamma?: unknown;
  pMin?: unknown;
  minN?: unknown;
  maxN?: unknown;
}

/** The settings of `given`, checked; `name(field)` says how the source spells a field. */
function build(given: Given, name: (field: keyof Given) => string, fail: (message: string) => never): SpeculativeOptions {
  const kind = given.kind ?? (given.draftModel !== undefined ? 'draft' : undefined);
  if (kind === undefined) fail(`${name('kind')} is needed (ngram or draft)`);
  if (!(SPECULATIVE_KINDS as readonly string[]).includes(kind!))
    fail(`${name('kind')} must be ngram or draft, got ${JSON.stringify(kind)}`);
  const integer = (field: 'gamma' | 'minN' | 'maxN', max: number): number | undefined => {
    const value = given[field];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      fail(`${name(field)} must be an integer from 1 to ${max}, got ${String(value)}`);
    }
    return value as number;
  };
  const gamma = integer('gamma', 32);
  const common = gamma !== undefined ? { gamma } : {};
  if (kind === 'ngram') {
    if (given.draftModel !== undefined || given.pMin !== undefined)
      fail(`${name('draftModel')} and ${name('pMin')} apply to a draft model only`);
    const [minN, maxN] = [integer('minN', 16), integer('maxN', 16)];
    if ((minN ?? 2) > (maxN ?? Math.max(4, minN ?? 2))) fail(`${name('minN')} (${minN}) must not exceed ${name('maxN')} (${maxN ?? 4})`);
    return {
      kind: 'ngram',
      ...common,
      ...(minN !== undefined ? { minN } : {}),
      ...(maxN !== undefined ? { maxN } : {}),
    };
  }
  if (given.minN !== undefined || given.maxN !== undefined) fail(`${name('minN')} and ${name('maxN')} apply to prompt lookup (ngram) only`);
  if (given.draftModel === undefined) fail(`a draft needs ${name('draftModel')}`);
  const pMin = given.pMin;
  if (pMin !== undefined && (typeof pMin !== 'number' || !(pMin >= 0 && pMin <= 1)))
    fail(`${name('pMin')} must be from 0 to 1, got ${String(pMin)}`);
  return {
    kind: 'draft',
    draftModel: given.draftModel!,
    ...common,
    ...(given.draftFile !== undefined ? { draftFile: given.draftFile } : {}),
    ...(pMin !== undefined ? { pMin: pMin as number } : {}),
  };
}

const FLAG_NAMES: Record<keyof Given, string> = {
  kind: '--speculative',
  draftModel: '--draft-model',
  draftFile: '--draft-file',
  gamma: '--gamma',
  pMin: '--draft-p-min',
  minN: '--ngram-min',
  maxN: '--ngram-max',
};

/** The flags' settings over a TOML file's (the flags win whole when they name a kind). */
export function speculativeFromFlags(args: SpeculativeFlagArgs, fromToml?: SpeculativeOptions): SpeculativeOptions | undefined {
  const given: Given = {
    kind: args.speculative,
    draftModel: args['draft-model'],
    draftFile: args['draft-file'],
    gamma: args.gamma,
    pMin: args['draft-p-min'],
    minN: args['ngram-min'],
    maxN: args['ngram-max'],
  };
  const any = Object.values(given).some((v) => v !== undefined);
  if (!any) return fromToml;
  const fail = (message: string): never => {
    throw new UsageError(message);
  };
  if (given.kind === undefined && given.draftModel === undefined && fromToml) {
    // Numbers alone adjust the file's settings.
    return build({ ...tomlGiven(fromToml), ...definedOnly(given) }, (f) => FLAG_NAMES[f], fail);
  }
  return build(given, (f) => FLAG_NAMES[f], fail);
}

function tomlGiven(o: SpeculativeOptions): Given {
  return o.kind === 'ngram'
    ? { kind: 'ngram', gamma: o.gamma, minN: o.minN, maxN: o.maxN }
    : { kind: 'draft', draftModel: o.draftModel, draftFile: o.draftFile, gamma: o.gamma, pMin: o.pMin };
}

function definedOnly(g: Given): Given {
  return Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined)) as Given;
}

/** The TOML keys of `[speculative]` and of its `draft_model` table. */
export const SPECULATIVE_KEYS = ['kind', 'gamma', 'p_min', 'ngram_min', 'ngram_max', 'draft_model'];
const DRAFT_MODEL_KEYS = ['model_id', 'quantized_model_id', 'quantized_filename', 'model', 'file'];

/** `[speculative]` (at `where`, e.g. `[speculative].`), checked. */
export function readSpeculativeTable(value: unknown, where: string, fail: (message: string) => never): SpeculativeOptions {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`${where.slice(0, -1)} must be a table`);
  const table = value as Record<string, unknown>;
  const unknown = Object.keys(table).filter((k) => !SPECULATIVE_KEYS.includes(k));
  if (unknown.length > 0)
    fail(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => where + k).join(', ')} (known: ${SPECULATIVE_KEYS.join(', ')})`);
  let draftModel: string | undefined;
  let draftFile: string | undefined;
  if (table.draft_model !== undefined) {
    const d = table.draft_model;
    if (d === null || typeof d !== 'object' || Array.isArray(d)) fail(`${where}draft_model must be a table: [speculative.draft_model]`);
    const draft = d as Record<string, unknown>;
    const bad = Object.keys(draft).filter((k) => !DRAFT_MODEL_KEYS.includes(k));
    if (bad.length > 0)
      fail(
        `unknown key${bad.length > 1 ? 's' : ''} ${bad.map((k) => `${where}draft_model.${k}`).join(', ')} (known: ${DRAFT_MODEL_KEYS.join(', ')})`,
      );
    for (const key of DRAFT_MODEL_KEYS) {
      if (draft[key] !== undefined && typeof draft[key] !== 'string') fail(`${where}draft_model.${key} must be a string`);
    }
    draftModel = (draft.quantized_model_id ?? draft.model_id ?? draft.model) as string | undefined;
    draftFile = (draft.quantized_filename ?? draft.file) as string | undefined;
    if (draftModel === undefined) fail(`${where}draft_model needs quantized_model_id, model_id or model`);
  }
  if (table.kind !== undefined && typeof table.kind !== 'string') fail(`${where}kind must be a string`);
  const names: Record<keyof Given, string> = {
    kind: `${where}kind`,
    draftModel: `${where}draft_model`,
    draftFile: `${where}draft_model.quantized_filename`,
    gamma: `${where}gamma`,
    pMin: `${where}p_min`,
    minN: `${where}ngram_min`,
    maxN: `${where}ngram_max`,
  };
  return build(
    {
      kind: table.kind as string | undefined,
      draftModel,
      draftFile,
      gamma: table.gamma,
      pMin: table.p_min,
      minN: table.ngram_min,
      maxN: table.ngram_max,
    },
    (f) => names[f],
    fail,
  );
}
