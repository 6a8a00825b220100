// Constrained against free generation on the real models: generated tokens/s of a JSON-schema
// answer and of an unconstrained one of the same length, same prompt, greedy, in one run.
// Tokens the grammar forces are fed in one step with the sampled one, so a constrained answer
// can take fewer steps than it has tokens; both figures are printed.
//
//   node bench/grammar.mjs [--reps 3]                (after ./scripts/setup.sh)
// The mask's own cost per token: cargo run --release -p mistralrs-bench --bin grammar_mask -- FILE.gguf
import { Engine, fetchRegistryModel, runtimeInfo } from '@mistralrs/core';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const REPS = arg('--reps', 3);
const MODELS = ['smollm2-135m-instruct-q4_1', 'gemma3-270m-q4_k_m'];
const SCHEMA = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      minItems: 6,
      maxItems: 6,
      items: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 16 },
          quantity: { type: 'integer', minimum: 1, maximum: 99 },
          fragile: { type: 'boolean' },
        },
        required: ['name', 'quantity', 'fragile'],
        additionalProperties: false,
      },
    },
  },
  required: ['items'],
  additionalProperties: false,
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const messages = [{ role: 'user', content: 'List six things to pack for a move, as JSON.' }];

console.log(`threads: ${runtimeInfo().threads}; kernels: ${runtimeInfo().selectedIsa}; median of ${REPS}`);
for (const id of MODELS) {
  const engine = await Engine.load({ model: await fetchRegistryModel(id), kvTokens: 2048 });
  try {
    const run = (options) =>
      engine.chatTemplate
        ? engine.chat({ messages, ...options }).result
        : engine.complete({ prompt: 'A list of six things to pack for a move, as JSON:\n', ...options }).result;
    // The first grammar request builds the vocabulary trie: not part of the per-token figure.
    const setup = performance.now();
    await engine.compileGrammar({ type: 'json_schema', value: SCHEMA });
    const trieMs = performance.now() - setup;
    const constrained = [];
    const free = [];
    let tokens = 0;
    for (let r = 0; r < REPS; r++) {
      const c = await run({ maxTokens: 400, grammar: { type: 'json_schema', value: SCHEMA } });
      tokens = c.tokenIds.length;
      constrained.push((tokens / (c.timings.promptMs + c.timings.generationMs)) * 1000);
      const f = await run({ maxTokens: tokens, ignoreEos: true });
      free.push((f.tokenIds.length / (f.timings.promptMs + f.timings.generationMs)) * 1000);
    }
    const ratio = median(constrained) / median(free);
    console.log(
      `${id.padEnd(28)} ${tokens} tokens: constrained ${median(constrained).toFixed(1)} tok/s, free ${median(free).toFixed(1)} tok/s ` +
        `(${ratio.toFixed(2)}x; first-grammar setup ${trieMs.toFixed(0)} ms)`,
    );
  } finally {
    engine.close();
  }
}
