// Continuous batching under load: N concurrent streams (1, 2, 4, 8) on the default model,
// aggregate generated tokens per second, time to first token and per-request latency; and
// the same load served one request at a time (maxRunning 1, as a single-sequence server such
// as node-llama-cpp's would), printing the batching gain.
//
//   node bench/batching.mjs [--streams 1,2,4,8] [--prompt 32] [--tokens 128] [--model ID]
import { Engine, fetchRegistryModel, runtimeInfo } from '@mistralrs/core';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const STREAMS = arg('--streams', '1,2,4,8').split(',').map(Number);
const PROMPT = Number(arg('--prompt', '32'));
const TOKENS = Number(arg('--tokens', '128'));
const MODEL = arg('--model', 'smollm2-135m-instruct-q4_1');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** N requests at once; each prompt differs (no prefix sharing), all generate TOKENS. */
async function run(engine, n) {
  const vocab = engine.info.vocabSize;
  const started = performance.now();
  const requests = Array.from({ length: n }, async (_, r) => {
    const prompt = Array.from({ length: PROMPT }, (_, i) => 1000 + ((i * 7919 + r * 104729) % (vocab - 2000)));
    const t0 = performance.now();
    let first = 0;
    const generation = engine.complete({ prompt, maxTokens: TOKENS, ignoreEos: true });
    for await (const _ of generation) if (!first) first = performance.now();
    const result = await generation.result;
    return { ttft: first - t0, latency: performance.now() - t0, tokens: result.tokenIds.length };
  });
  const results = await Promise.all(requests);
  const wall = performance.now() - started;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  return {
    tps: (tokens / wall) * 1000,
    ttft: median(results.map((r) => r.ttft)),
    latency: median(results.map((r) => r.latency)),
  };
}

const path = await fetchRegistryModel(MODEL);
const kvTokens = Math.max(...STREAMS) * (PROMPT + TOKENS + 32);
const batched = await Engine.load({ model: path, kvTokens, prefixCaching: false });
const serial = await Engine.load({ model: path, kvTokens, prefixCaching: false, maxRunning: 1 });
console.log(`${MODEL}; ${runtimeInfo().threads} threads, ${runtimeInfo().selectedIsa} kernels`);
console.log(`each request: ${PROMPT} prompt tokens, ${TOKENS} generated; medians per request`);
console.log('streams | batched: tok/s  ttft ms  latency ms | one at a time: tok/s  ttft ms  latency ms | gain');
await run(batched, 1); // warm-up
for (const n of STREAMS) {
  const b = await run(batched, n);
  const s = await run(serial, n);
  const f = (x, w) => x.toFixed(0).padStart(w);
  console.log(
    `${String(n).padStart(7)} | ${f(b.tps, 14)} ${f(b.ttft, 8)} ${f(b.latency, 11)} | ${f(s.tps, 20)} ${f(s.ttft, 8)} ${f(s.latency, 11)} | ${(b.tps / s.tps).toFixed(2)}x`,
  );
}
batched.close();
serial.close();
