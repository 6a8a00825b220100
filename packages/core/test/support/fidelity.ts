/**
 * Comparing our model with llama.cpp (node-llama-cpp) step by step, for the fidelity suites.
 *
 * - `peerSteps`: llama.cpp's logits at every step of a generation, the prompt in one batch and
 *   then one token per step, following its own greedy choice or a given path.
 * - `ourSteps`: ours the same way, through the native model as the engine's scheduler drives
 *   it (one step for each prompt, then one token per sequence per step), for one sequence or
 *   several in the same steps.
 * - `kernelTiers`: which kernel tier each side runs. The exactness we claim was measured with
 *   both on AVX2 (our `avx2` tier, llama.cpp's `haswell` CPU variant); elsewhere the suites
 *   register their comparisons as skipped, naming the tiers (see docs/testing.md).
 *
 * The suites are bounded by work (prompts × tokens), not by a wall clock: `WORK_BOUNDED` is
 * jest's largest timeout, given to their tests so that a busy shared machine slows them down
 * instead of failing them.
 */
import { getLlama, type Llama, type LlamaContextSequence } from 'node-llama-cpp';

import { runtimeInfo } from '../../src/index.js';
import { binding } from '../../src/native.js';

/** jest's largest per-test timeout (2^31 − 1 ms): no wall-clock bound. */
export const WORK_BOUNDED = 2 ** 31 - 1;

/** The tier on which the exactness claims are made (docs/testing.md). */
export const CLAIMED_TIER = 'avx2';

/** llama.cpp's CPU backend, without GPU builds (they are not installed). */
export function loadPeer(): Promise<Llama> {
  return getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
}

export interface KernelTiers {
  /** Our selected tier (`MISTRALRS_ISA` lowers it). */
  ours: string;
  /** llama.cpp's, from the features its loaded CPU backend was built for. */
  peer: string;
  /** Whether both sides run the tier the exactness claims are made on. */
  claimed: boolean;
}

/**
 * `avx2` when llama.cpp's CPU backend was built for AVX2 + FMA + F16C and nothing above
 * (AVX-512, AVX-VNNI, AMX), as its `haswell` variant is; otherwise a name for what it has.
 */
export function peerTier(systemInfo: string): string {
  const on = (flag: string) => new RegExp(`\\b${flag} = 1\\b`).test(systemInfo);
  if (on('AVX512')) return 'avx512';
  if (on('AVX_VNNI')) return 'avx2+avx_vnni';
  if (on('AMX_INT8')) return 'amx';
  if (on('AVX2') && on('FMA') && on('F16C')) return 'avx2';
  return 'below-avx2';
}

export function kernelTiers(llama: Llama): KernelTiers {
  const ours = runtimeInfo().selectedIsa;
  const peer = peerTier(llama.systemInfo);
  return { ours, peer, claimed: ours === CLAIMED_TIER && peer === CLAIMED_TIER };
}

/** The first index of the largest value (llama.cpp's and our greedy choice). */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** The largest |a − b| over a row. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`rows of ${a.length} and ${b.length} logits`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = d; // NaN propagates
  }
  return max;
}

export interface PeerRun {
  /** llama.cpp's greedy token at each step (its argmax, whatever was fed next). */
  tokens: number[];
  /** Its logits at each step: after the prompt, then after each token fed. */
  logits: Float32Array[];
}

/**
 * llama.cpp's logits for `steps` steps from `prompt` on `seq` (its history cleared first, so
 * that the prompt starts at the first cell of the cache, as ours at the first slot of its
 * first block): fed its own greedy tokens, or `path` (teacher forcing) when given. Greedy, it
 * stops after an end-of-generation token in `stop`.
 */
export async function peerSteps(
  seq: LlamaContextSequence,
  prompt: number[],
  options: { steps: number; vocab: number; path?: number[]; stop?: Set<number> },
): Promise<PeerRun> {
  await seq.clearHistory();
  try {
    const run: PeerRun = { tokens: [], logits: [] };
    let input = prompt;
    for (let step = 0; step < options.steps; step++) {
      const last = input.length - 1;
      const out = await seq.controlledEvaluate(input.map((t, i) => (i === last ? [t, { generateNext: { logits: true } }] : t)));
      const map = out[last]?.next?.logits as Map<number, number> | undefined;
      if (!map || map.size !== options.vocab) throw new Error(`llama.cpp returned ${map?.size ?? 'no'} logits, not ${options.vocab}`);
      const row = new Float32Array(options.vocab);
      for (const [t, l] of map) row[t] = l;
      const best = argmax(row);
      run.logits.push(row);
      run.tokens.push(best);
      if (!options.path && options.stop?.has(best)) break;
      input = [options.path ? options.path[step]! : best];
    }
    return run;
  } finally {
    await seq.clearHistory();
  }
}

export interface OurRun {
  prompt: number[];
  /** Tokens fed after the prompt, one per step. */
  path: number[];
  /** Logit rows wanted: after the prompt and after each of the first `steps − 1` of `path`. */
  steps: number;
}

/**
 * Our logits along each run's path, computed as generation computes them: one step with every
 * prompt (each in one chunk), then steps with one token of every sequence still going.
 * `onStep(run, step, logits)` sees each row as it comes. A fresh native model of `modelPath`
 * (not the engine's), released at the end; `kvTokens` should be the engine's.
 */
export async function ourSteps(
  modelPath: string,
  runs: OurRun[],
  onStep: (run: number, step: number, logits: Float32Array) => void,
  options: { blockSize?: number; kvTokens?: number } = {},
): Promise<void> {
  const blockSize = options.blockSize ?? 32;
  const blocksFor = (r: OurRun) => Math.ceil((r.prompt.length + r.steps) / blockSize);
  // At least the engine's cache: the model's context is the smaller of the cache and its
  // trained context, and some choices depend on it (LongRoPE's factors).
  const kvTokens = Math.max(runs.reduce((n, r) => n + blocksFor(r), 0) * blockSize, options.kvTokens ?? 0);
  const model = await binding.loadModel(modelPath, { kvTokens, blockSize });
  try {
    let next = 0;
    const tables = runs.map((r) => {
      const table = Uint32Array.from({ length: blocksFor(r) }, (_, i) => next + i);
      next += table.length;
      return table;
    });
    for (const i of runs.keys()) model.addSequence(i + 1, { temperature: 0 });
    const longest = Math.max(...runs.map((r) => r.steps));
    for (let step = 0; step < longest; step++) {
      const active = runs.map((r, i) => ({ r, i })).filter(({ r }) => step < r.steps);
      const outputs = await model.step(
        active.map(({ r, i }) => ({
          seqId: i + 1,
          tokens: Uint32Array.from(step === 0 ? r.prompt : [r.path[step - 1]!]),
          startPos: step === 0 ? 0 : r.prompt.length + step - 1,
          blockTable: tables[i]!,
          sample: false,
          returnLogits: true,
        })),
      );
      outputs.forEach((out, k) => {
        if (!out.logits) throw new Error(`step ${step}: no logits for sequence ${active[k]!.i}`);
        onStep(active[k]!.i, step, out.logits);
      });
    }
  } finally {
    model.release();
  }
}

export interface StepComparison {
  /** The largest |Δ logit| of each step. */
  maxAbs: number[];
  /** Steps where our greedy token is not llama.cpp's, with llama.cpp's margin of its token over ours. */
  tokenDifferences: Array<{ step: number; ours: number; peer: number; peerMargin: number }>;
}

/** Compares our rows with the peer's, step by step, as they come. */
export class StepComparer {
  readonly result: StepComparison = { maxAbs: [], tokenDifferences: [] };

  constructor(private readonly peer: PeerRun) {}

  add(step: number, ours: Float32Array): void {
    const peerRow = this.peer.logits[step]!;
    this.result.maxAbs[step] = maxAbsDiff(ours, peerRow);
    const [a, p] = [argmax(ours), this.peer.tokens[step]!];
    if (a !== p) this.result.tokenDifferences.push({ step, ours: a, peer: p, peerMargin: peerRow[p]! - peerRow[a]! });
  }

  get worst(): number {
    return this.result.maxAbs.reduce((m, d) => (d > m || Number.isNaN(d) ? d : m), 0);
  }
}
