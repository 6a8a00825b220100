/**
 * Where a model comes from: a local file or folder, a registry model id, or a Hugging Face Hub
 * repository (`org/name`, `org/name:Q4_K_M`), downloaded into huggingface_hub's cache.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { HubError } from '../hub/errors.js';
import {
  checkpointShards,
  CHECKPOINT_SIDE_FILES,
  SENTENCE_TRANSFORMERS_FILES,
  sentenceTransformerModuleFiles,
  chooseGgufFiles,
  isCheckpointRepo,
  splitGgufParts,
  TOKENIZER_FILES,
} from '../hub/model-files.js';
import { HubRepository, isRepoId, type HubOptions } from '../hub/repository.js';
import type { TokenSource } from '../hub/token.js';
import { fetchRegistryModel } from '../registry-fetch.js';
import { DEFAULT_MODEL_ID, registryModel } from '../registry-models.js';

/** What kind of model a command asks for: mistral.rs's `gguf` and `plain`, or either (`run -m`). */
export type ModelFormat = 'gguf' | 'plain';

export interface ModelSourceOptions {
  /** Hub token: literal:TOKEN, env:VAR, path:FILE, cache (default: `HF_TOKEN`, then the token file) or none. */
  tokenSource?: TokenSource;
  /** Hub revision: a branch, tag or commit (default main). */
  revision?: string;
  /** What the model must be; told from the repository's files when absent. */
  format?: ModelFormat;
  /** The Hub's endpoint, cache folder, offline mode and progress output (defaults from the environment). */
  hub?: Omit<HubOptions, 'revision' | 'tokenSource'>;
}

/** The Hub settings of a load's options, those given only. */
export function modelSourceOptions(o: Pick<ModelSourceOptions, 'tokenSource' | 'revision' | 'hub'>): ModelSourceOptions {
  return {
    ...(o.tokenSource !== undefined ? { tokenSource: o.tokenSource } : {}),
    ...(o.revision !== undefined ? { revision: o.revision } : {}),
    ...(o.hub !== undefined ? { hub: o.hub } : {}),
  };
}

export class ModelNotFoundError extends Error {
  override readonly name = 'ModelNotFoundError';
  readonly code = 'ModelNotFoundError';
}

/** `org/name` and llama.cpp's `org/name:TAG` (a GGUF quantization), or undefined for anything else. */
export function parseHubModelId(spec: string): { repo: string; tag?: string } | undefined {
  const colon = spec.lastIndexOf(':');
  const [repo, tag] = colon > 0 ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, undefined];
  if (!isRepoId(repo) || (tag !== undefined && !/^[\w.-]+$/.test(tag))) return undefined;
  return tag === undefined ? { repo } : { repo, tag };
}

/**
 * Resolves a model argument to what the loader opens: a `.gguf` file (the first part of a split
 * one) or a Hugging Face folder. A local path wins over everything: a file as it is, a folder in
 * Hugging Face layout as it is, or the `.gguf` in it (`files` names it when there are several);
 * then a registry model id (or nothing: the default model), fetched on first use; then a Hub
 * repository, whose files are downloaded once into the cache.
 */
export async function resolveModelPath(
  model: string | undefined,
  files: string | readonly string[] | undefined,
  options: ModelSourceOptions = {},
): Promise<string> {
  const named = files === undefined ? [] : typeof files === 'string' ? [files] : [...files];
  const spec = model ?? DEFAULT_MODEL_ID;
  if (existsSync(spec)) return localModelPath(spec, named);
  if (registryModel(spec)) return fetchRegistryModel(spec);
  const hubId = parseHubModelId(spec);
  if (!hubId) {
    throw new ModelNotFoundError(
      `model ${JSON.stringify(spec)}: no such file or folder, registry model (see pull --list) or Hugging Face repository (org/name)`,
    );
  }
  const repo = await HubRepository.open(hubId.repo, hubOptions(options));
  const format = options.format ?? (named.length > 0 || hubId.tag !== undefined || !isCheckpointRepo(repo.paths) ? 'gguf' : 'plain');
  if (format === 'plain') {
    if (hubId.tag !== undefined)
      throw new HubError('invalid_argument', `${spec}: a quantization tag names a GGUF file; plain models take none`);
    return downloadCheckpoint(repo);
  }
  const chosen = offlineAware(repo, () => chooseGgufFiles(hubId.repo, repo.paths, named, hubId.tag));
  const local: string[] = [];
  for (const file of chosen) local.push(await repo.download(file));
  return local[0]!;
}

/** The folder of `-t/--tok-model-id`: a local folder or `tokenizer.json`, or a Hub repository's tokenizer files. */
export async function resolveTokenizerDir(spec: string, options: ModelSourceOptions = {}): Promise<string> {
  if (existsSync(spec)) {
    const dir = statSync(spec).isDirectory() ? spec : dirname(spec);
    if (!existsSync(join(dir, 'tokenizer.json'))) throw new ModelNotFoundError(`tokenizer ${spec}: no tokenizer.json in ${dir}`);
    return dir;
  }
  const hubId = parseHubModelId(spec);
  if (!hubId || hubId.tag !== undefined) {
    throw new ModelNotFoundError(`tokenizer ${JSON.stringify(spec)}: no such folder or Hugging Face repository (org/name)`);
  }
  const repo = await HubRepository.open(hubId.repo, hubOptions(options));
  if (!repo.has('tokenizer.json')) throw new HubError('file_not_found', `${hubId.repo} has no tokenizer.json`);
  for (const file of TOKENIZER_FILES) if (repo.has(file)) await repo.download(file);
  return repo.snapshotDir;
}

/** Working from the cache alone, a file the listing lacks may just not be downloaded yet: say so. */
function offlineAware<T>(repo: HubRepository, choose: () => T): T {
  try {
    return choose();
  } catch (error) {
    if (!repo.fromCache || !(error instanceof HubError) || error.kind !== 'file_not_found') throw error;
    throw new HubError('not_cached', `${error.message} (working offline: these are the files the cache holds, in ${repo.snapshotDir})`);
  }
}

function hubOptions(options: ModelSourceOptions): HubOptions {
  return {
    ...options.hub,
    ...(options.revision !== undefined ? { revision: options.revision } : {}),
    ...(options.tokenSource !== undefined ? { tokenSource: options.tokenSource } : {}),
  };
}

/** A checkpoint's config, tokenizer files and weight shards; its snapshot folder is the model. */
async function downloadCheckpoint(repo: HubRepository): Promise<string> {
  if (!isCheckpointRepo(repo.paths)) {
    const ggufs = repo.paths.filter((p) => p.endsWith('.gguf'));
    throw new HubError(
      'file_not_found',
      `${repo.repo} holds no safetensors checkpoint (config.json beside .safetensors files)` +
        (ggufs.length > 0 ? `; it has GGUF files: use gguf -m ${repo.repo} -f FILE (${ggufs.join(', ')})` : ''),
    );
  }
  const indexFile = 'model.safetensors.index.json';
  const index = repo.has(indexFile) ? JSON.parse(readFileSync(await repo.download(indexFile), 'utf8')) : undefined;
  const shards = checkpointShards(repo.repo, repo.paths, index);
  for (const file of [...CHECKPOINT_SIDE_FILES.filter((f) => repo.has(f)), ...shards]) await repo.download(file);
  // An embedding model's pooling and dense layers (sentence-transformers).
  if (repo.has('modules.json')) {
    const modules = JSON.parse(readFileSync(await repo.download('modules.json'), 'utf8')) as unknown;
    const files = [
      ...SENTENCE_TRANSFORMERS_FILES.filter((f) => f !== 'modules.json' && repo.has(f)),
      ...sentenceTransformerModuleFiles(repo.repo, repo.paths, modules),
    ];
    for (const file of files) await repo.download(file);
  }
  return repo.snapshotDir;
}

function localModelPath(spec: string, named: string[]): string {
  if (!statSync(spec).isDirectory()) {
    if (named.length > 0) throw new ModelNotFoundError(`${spec} is a file; -f names a file inside a model folder`);
    return spec;
  }
  // A Hugging Face folder (config.json + safetensors) is loaded as it is.
  if (named.length === 0 && isHfFolder(spec)) return spec;
  if (named.length > 0) {
    const parts = [...new Set(named.flatMap(splitGgufParts))];
    for (const part of parts) {
      if (!existsSync(join(spec, part))) throw new ModelNotFoundError(`${join(spec, part)}: no such file`);
    }
    return join(spec, parts[0]!);
  }
  const ggufs = readdirSync(spec).filter((f) => f.endsWith('.gguf'));
  const wholes = [...new Set(ggufs.map((f) => splitGgufParts(f)[0]!))];
  if (wholes.length === 1) return join(spec, wholes[0]!);
  throw new ModelNotFoundError(
    wholes.length === 0 ? `${spec}: no .gguf file in this folder` : `${spec}: several .gguf files (${ggufs.join(', ')}); name one with -f`,
  );
}

/** A folder in Hugging Face layout: `config.json` beside the safetensors. */
export function isHfFolder(path: string): boolean {
  return existsSync(join(path, 'config.json')) && statSync(path).isDirectory();
}
