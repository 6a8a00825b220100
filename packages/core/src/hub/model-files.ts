/**
 * Which files of a repository make a model: the GGUF a user named (or its quantization tag,
 * llama.cpp's `org/repo:Q4_K_M`), every part of a split GGUF, or a safetensors checkpoint's
 * config, tokenizer and weight shards.
 */
import { HubError } from './errors.js';

/** llama.cpp's gguf-split names: `name-00001-of-00003.gguf`. */
const SPLIT_GGUF = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** The files besides the weights that a safetensors checkpoint may carry, all fetched when present. */
export const CHECKPOINT_SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
] as const;

/** What makes a checkpoint a sentence-transformers model (an embedding model), when present. */
export const SENTENCE_TRANSFORMERS_FILES = ['modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'] as const;

/**
 * The files of the modules `modules.json` lists after the transformer (`1_Pooling/config.json`,
 * `2_Dense/model.safetensors`…): each module folder's JSON and safetensors files.
 */
export function sentenceTransformerModuleFiles(repo: string, paths: readonly string[], modules: unknown): string[] {
  if (!Array.isArray(modules)) throw new HubError('invalid_argument', `${repo}/modules.json is not a list of modules`);
  const folders = modules
    .map((m: unknown) => (typeof m === 'object' && m !== null ? (m as { path?: unknown }).path : undefined))
    .filter((p): p is string => typeof p === 'string' && p !== '');
  return paths.filter((p) => folders.some((folder) => p.startsWith(`${folder}/`)) && /\.(json|safetensors)$/.test(p));
}

/** The tokenizer files `-t/--tok-model-id` takes from its repository (those present). */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
] as const;

export function isGgufPath(path: string): boolean {
  return path.toLowerCase().endsWith('.gguf');
}

/** The GGUF model files of a repository: multimodal projectors (`mmproj`) are not models. */
export function ggufModelFiles(paths: readonly string[]): string[] {
  return paths.filter((p) => isGgufPath(p) && !/(^|\/)mmproj/i.test(p));
}

/** Every part of the split GGUF `file` is one of, in order; `[file]` for a whole file. */
export function splitGgufParts(file: string): string[] {
  const m = SPLIT_GGUF.exec(file);
  if (!m) return [file];
  const count = Number(m[3]);
  if (count < 1) return [file];
  return Array.from({ length: count }, (_, i) => `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`);
}

/** The listing a user picks from when a GGUF file is missing or wrong. */
export function ggufChoices(repo: string, paths: readonly string[]): string {
  const files = ggufModelFiles(paths).filter((p) => {
    const m = SPLIT_GGUF.exec(p);
    return !m || Number(m[2]) === 1;
  });
  if (files.length === 0) return `${repo} has no .gguf file`;
  return `${repo} has: ${files.join(', ')}`;
}

/**
 * The files of the GGUF a command line asks for: the `-f` names (each with the other parts of
 * its split), the file whose name carries `quant` (`org/repo:Q4_K_M`), or the repository's only
 * GGUF. A missing or wrong name lists the repository's GGUF files.
 */
export function chooseGgufFiles(repo: string, paths: readonly string[], named: readonly string[], quant: string | undefined): string[] {
  if (named.length > 0 && quant !== undefined) {
    throw new HubError('invalid_argument', `${repo}:${quant}: give the quantization tag or -f, not both`);
  }
  let chosen: string[];
  if (named.length > 0) {
    for (const file of named) {
      if (!paths.includes(file))
        throw new HubError('file_not_found', `${repo} has no file ${JSON.stringify(file)}; ${ggufChoices(repo, paths)}`);
      if (!isGgufPath(file)) throw new HubError('invalid_argument', `${repo}/${file} is not a .gguf file; ${ggufChoices(repo, paths)}`);
    }
    chosen = [...new Set(named.flatMap(splitGgufParts))];
    const firsts = new Set(chosen.map((f) => splitGgufParts(f)[0]));
    if (firsts.size > 1) {
      throw new HubError(
        'invalid_argument',
        `${repo}: several -f name one model only as the parts of one split GGUF (name-00001-of-0000N.gguf); got ${named.join(', ')}`,
      );
    }
  } else {
    const models = ggufModelFiles(paths);
    const wholes = [...new Set(models.map((f) => splitGgufParts(f)[0]!))];
    const matching = quant === undefined ? wholes : wholes.filter((f) => hasQuantTag(f, quant));
    if (matching.length !== 1) {
      const why =
        quant === undefined
          ? wholes.length === 0
            ? 'no GGUF file to load'
            : 'name the file with -f, or the quantization as org/repo:Q4_K_M'
          : matching.length === 0
            ? `no GGUF file is tagged ${quant}`
            : `several GGUF files are tagged ${quant} (${matching.join(', ')}); name one with -f`;
      throw new HubError('file_not_found', `${repo}: ${why}; ${ggufChoices(repo, paths)}`);
    }
    chosen = splitGgufParts(matching[0]!);
  }
  const missing = chosen.filter((f) => !paths.includes(f));
  if (missing.length > 0) throw new HubError('file_not_found', `${repo}: the split GGUF lacks ${missing.join(', ')}`);
  return chosen;
}

/** Whether the file name carries the quantization tag as a whole word: `Q4_K` is not `Q4_K_M`. */
function hasQuantTag(file: string, quant: string): boolean {
  const stem = (file.split('/').pop() ?? file).toLowerCase().replace(/(-\d{5}-of-\d{5})?\.gguf$/, '');
  const tag = quant.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[-.])${tag}($|[-.])`).test(stem);
}

/** Whether the repository holds a safetensors checkpoint (rather than GGUF files). */
export function isCheckpointRepo(paths: readonly string[]): boolean {
  return paths.includes('config.json') && paths.some((p) => !p.includes('/') && p.endsWith('.safetensors'));
}

/**
 * The weight shards of a checkpoint: those `model.safetensors.index.json`'s `weight_map` names,
 * else every top-level `.safetensors` file.
 */
export function checkpointShards(repo: string, paths: readonly string[], index: unknown): string[] {
  if (index === undefined) {
    const shards = paths.filter((p) => !p.includes('/') && p.endsWith('.safetensors'));
    if (shards.length === 0) throw new HubError('file_not_found', `${repo} has no .safetensors weights at its top level`);
    return shards;
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) {
    throw new HubError('invalid_argument', `${repo}/model.safetensors.index.json has no weight_map object`);
  }
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const shard of shards) {
    if (typeof shard !== 'string' || !paths.includes(shard)) {
      throw new HubError(
        'file_not_found',
        `${repo}/model.safetensors.index.json names ${JSON.stringify(shard)}, which the repository lacks`,
      );
    }
  }
  return shards as string[];
}
