// Which KV block size to default to: decode speed of one stream at a given depth, and the
// aggregate of 8 streams, for several block sizes (the attention kernels walk the cache one
// block at a time; small blocks waste less memory per sequence, large ones loop less).
//
//   node bench/block-size.mjs [--sizes 16,32,64,128] [--depth 1024] [--model ID]
import { Engine, fetchRegistryModel, runtimeInfo } from '@mistralrs/core';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const SIZES = arg('--sizes', '16,32,64,128').split(',').map(Number);
const DEPTH = Number(arg('--depth', '1024'));
const MODEL = arg('--model', 'smollm2-135m-instruct-q4_1');
const TOKENS = 64;

const path = await fetchRegistryModel(MODEL);
console.log(`${MODEL}; ${runtimeInfo().threads} threads; decode tokens/s after a ${DEPTH}-token prompt`);
console.log('block size | 1 stream | 8 streams (generated tokens over wall time, prompts included)');
for (const blockSize of SIZES) {
  const engine = await Engine.load({ model: path, blockSize, kvTokens: 8 * (DEPTH + TOKENS + 2 * blockSize), prefixCaching: false });
  const vocab = engine.info.vocabSize;
  const prompt = (r) => Array.from({ length: DEPTH }, (_, i) => 1000 + ((i * 7919 + r * 104729) % (vocab - 2000)));
  const one = await engine.complete({ prompt: prompt(0), maxTokens: TOKENS, ignoreEos: true }).result;
  // 8 streams at once, prompt processing included: generated tokens over the wall time.
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, r) => engine.complete({ prompt: prompt(r + 1), maxTokens: TOKENS, ignoreEos: true }).result),
  );
  const aggregate = (results.reduce((a, r) => a + r.tokenIds.length, 0) / (performance.now() - t0)) * 1000;
  console.log(
    `${String(blockSize).padStart(10)} | ${one.timings.generationTps.toFixed(1).padStart(8)} | ${aggregate.toFixed(1).padStart(8)}`,
  );
  engine.close();
}
