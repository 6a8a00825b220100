import { binding } from './native.js';

/** One row of the native model registry: an architecture and its names. */
export interface ArchitectureEntry {
  /** transformers' `model_type`: the id (`info.architecture` of a loaded model). */
  id: string;
  /** Other `model_type`s of its checkpoints (`gemma3_text`). */
  modelTypes: string[];
  /** The `general.architecture` of its GGUFs, as llama.cpp's converter writes it. */
  gguf: string;
  /** What tells its GGUFs from others of the same name (`with experts`), or empty. */
  ggufMatch: string;
  /** mistral.rs's `-a` names that differ from the id (`phi3.5moe`). */
  cliNames: string[];
}

export interface RuntimeInfo {
  /** CPU features the kernels care about, e.g. `['avx2', 'fma', 'avx512vnni']`. */
  cpuFeatures: string[];
  /** The best kernel tier the CPU offers: `scalar`, `avx2` or `avx512vnni`. */
  bestIsa: string;
  /** The tier in use (lowered by `MISTRALRS_ISA`). */
  selectedIsa: string;
  /** Threads of the native pool (`MISTRALRS_NUM_THREADS` or the available cores). */
  threads: number;
  /** Architecture ids the native model registry can build (Hugging Face `model_type`s). */
  architectures: string[];
  /** The registry's rows, with every name each architecture goes by. */
  architectureTable: ArchitectureEntry[];
}

/** What the native layer sees of this machine. */
export function runtimeInfo(): RuntimeInfo {
  return binding.runtimeInfo();
}

/**
 * The architecture id a name means, from the native registry: an id or `model_type`
 * (`qwen3_moe`, `gemma3_text`), a mistral.rs `-a` name (`phi3.5moe`, `deepseekv3`) or a GGUF
 * `general.architecture` (`qwen3moe`; a name several share gives the first: `llama`,
 * `deepseek_v2`). Undefined when the registry does not know it.
 */
export function resolveArchitecture(name: string): string | undefined {
  return binding.resolveArchitecture(name) ?? undefined;
}
