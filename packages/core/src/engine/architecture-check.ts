/**
 * `-a/--arch` against the model a file holds: the name the user gave must be the architecture
 * the loader found, or the load is refused (running a file as the architecture it declares while
 * the user asked for another would silently answer a different question).
 *
 * TEMPORARY BRIDGE (issue 18 point 3): the native registry is being re-keyed by Hugging Face
 * `model_type` with GGUF and `-a` names as aliases. Until then this table maps mistral.rs's
 * `-a` names (and the registry ids and `model_type`s themselves) onto the ids the native
 * loader reports in `ModelInfo.architecture`. When the registry carries the aliases, replace
 * `ARCH_ALIASES` with a lookup in it.
 */
import { ARCHITECTURES } from '../architectures.js';

/**
 * Name a user may give → the native ids it accepts. Mistral and Llama share a loader
 * (`llama`), as do DeepSeek V2 and V3 (`deepseek2`), so `-a` cannot tell those apart yet; a
 * Mixtral GGUF declares `llama`.
 */
const ARCH_ALIASES: ReadonlyMap<string, readonly string[]> = new Map<string, readonly string[]>([
  ...ARCHITECTURES.map((row): [string, readonly string[]] => [row.arch, row.arch === 'mixtral' ? ['mixtral', 'llama'] : [row.registryId]]),
  // Hugging Face model_type spellings and the native ids themselves.
  ['phimoe', ['phimoe']],
  ['phi', ['phi2']],
  ['qwen3_moe', ['qwen3moe']],
  ['deepseek2', ['deepseek2']],
  ['deepseek_v2', ['deepseek2']],
  ['deepseek_v3', ['deepseek2']],
  ['gemma3_text', ['gemma3']],
]);

/** The names `-a` takes. */
export function knownArchitectureNames(): string[] {
  return [...ARCH_ALIASES.keys()];
}

/** Why `-a` cannot name anything, or undefined when it is a known name. */
export function unknownArchitecture(requested: string): string | undefined {
  if (ARCH_ALIASES.has(requested.toLowerCase())) return undefined;
  return `unknown architecture ${JSON.stringify(requested)} (-a takes ${knownArchitectureNames().join(', ')})`;
}

/** Why a model whose loader reports `actual` is not the `requested` architecture, or
 * undefined when it is. */
export function architectureMismatch(requested: string, actual: string): string | undefined {
  const accepted = ARCH_ALIASES.get(requested.toLowerCase());
  if (!accepted) return unknownArchitecture(requested);
  if (accepted.includes(actual)) return undefined;
  return `the model is ${actual}, not ${requested}`;
}
