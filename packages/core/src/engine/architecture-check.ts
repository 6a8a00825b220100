/**
 * `-a/--arch` names checked before a model loads: a name the native registry does not know is
 * a usage error, reported at once with the names it knows. Whether the file holds the named
 * architecture is the registry's decision at load (`EngineOptions.architecture`), which refuses
 * another architecture naming both.
 */
import { resolveArchitecture, runtimeInfo } from '../runtime-info.js';

/** Every name `-a` takes: the registry's ids (`model_type`s), other `model_type`s, mistral.rs's
 * `-a` names and GGUF names, without repeats, in table order. */
export function knownArchitectureNames(): string[] {
  const names = runtimeInfo().architectureTable.flatMap((e) => [e.id, ...e.modelTypes, ...e.cliNames, e.gguf]);
  return [...new Set(names)];
}

/** Why `-a` cannot name anything, or undefined when the registry knows the name. */
export function unknownArchitecture(requested: string): string | undefined {
  if (resolveArchitecture(requested) !== undefined) return undefined;
  return `unknown architecture ${JSON.stringify(requested)} (-a takes ${knownArchitectureNames().join(', ')})`;
}
