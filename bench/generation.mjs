// Prompt processing and generation speed, ours against llama.cpp (node-llama-cpp), on the
// real models, same threads, in one process run. Prints tokens/s (median and best of the
// repetitions) and the ratio ours/peer.
//
//   node bench/generation.mjs [--reps 3] [--pp 512] [--tg 128]      (after ./scripts/setup.sh)
import { availableParallelism } from 'node:os';
import { getLlama } from 'node-llama-cpp';
import { Engine, fetchRegistryModel, registryModel, runtimeInfo } from '@mistralrs/core';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const REPS = arg('--reps', 3);
const PP = arg('--pp', 512);
const TG = arg('--tg', 128);
const threads = runtimeInfo().threads;
const MODELS = ['smollm2-135m-instruct-q4_1', 'gemma3-270m-q4_k_m'];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `${median(xs).toFixed(1).padStart(7)} (${Math.max(...xs).toFixed(1)})`;

console.log(`threads: ${threads} of ${availableParallelism()} cores; kernels: ${runtimeInfo().selectedIsa}`);
console.log(`pp${PP}: prompt tokens/s; tg${TG}: generated tokens/s; median (best) of ${REPS}`);
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });

for (const id of MODELS) {
  const path = await fetchRegistryModel(id);
  let engine;
  try {
    // No prefix caching: every repetition must compute the whole prompt.
    engine = await Engine.load({ model: path, kvTokens: PP + TG + 64, prefixCaching: false });
  } catch (e) {
    console.log(`\n${registryModel(id).description}\n  ours: cannot load (${e.message.split('\n')[0]}); skipped`);
    continue;
  }
  const vocab = engine.info.vocabSize;
  // A fixed pseudo-random prompt of ordinary tokens (ids 1000..), same for both engines.
  const prompt = Array.from({ length: PP }, (_, i) => 1000 + ((i * 7919) % (vocab - 2000)));
  const ours = { pp: [], tg: [] };
  for (let r = 0; r < REPS; r++) {
    const res = await engine.complete({ prompt, maxTokens: TG, stopTokenIds: [], ignoreEos: true }).result;
    ours.pp.push(res.timings.promptTps);
    if (res.tokenIds.length > 1) ours.tg.push(res.timings.generationTps);
  }
  engine.close();

  const model = await llama.loadModel({ modelPath: path });
  const ctx = await model.createContext({ contextSize: PP + TG + 64, threads, batchSize: PP });
  const peer = { pp: [], tg: [] };
  for (let r = 0; r < REPS; r++) {
    const seq = ctx.getSequence();
    let t = performance.now();
    let n = 0;
    let promptDone = 0;
    for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
      if (n === 0) promptDone = performance.now();
      if (++n >= TG) break;
    }
    const end = performance.now();
    peer.pp.push((PP / (promptDone - t)) * 1000);
    peer.tg.push(((n - 1) / (end - promptDone)) * 1000);
    seq.dispose();
  }
  await ctx.dispose();
  await model.dispose();

  console.log(`\n${registryModel(id).description}`);
  console.log(`            ours             llama.cpp        ratio ours/peer`);
  console.log(`  pp${PP}  ${fmt(ours.pp)}  ${fmt(peer.pp)}  ${(median(ours.pp) / median(peer.pp)).toFixed(2)}x`);
  console.log(`  tg${TG}  ${fmt(ours.tg)}  ${fmt(peer.tg)}  ${(median(ours.tg) / median(peer.tg)).toFixed(2)}x`);
}
await llama.dispose();
