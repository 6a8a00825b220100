import { binding } from './native.js';

export interface RuntimeInfo {
  /** CPU features the kernels care about, e.g. `['avx2', 'fma', 'avx512vnni']`. */
  cpuFeatures: string[];
  /** The best kernel tier the CPU offers: `scalar`, `avx2` or `avx512vnni`. */
  bestIsa: string;
  /** The tier in use (lowered by `MISTRALRS_ISA`). */
  selectedIsa: string;
  /** Threads of the native pool (`MISTRALRS_NUM_THREADS` or the available cores). */
  threads: number;
  /** Architecture ids the native model registry can build (`general.architecture`,
   * `model_type`). */
  architectures: string[];
}

/** What the native layer sees of this machine. */
export function runtimeInfo(): RuntimeInfo {
  return binding.runtimeInfo();
}
