// Speculative decoding: generation speed and acceptance with and without each proposer, ours
// against llama.cpp's through node-llama-cpp (its InputLookupTokenPredictor is prompt lookup,
// its DraftSequenceTokenPredictor a draft model), on the same files, prompt tokens and thread
// count, greedy. Each engine runs in its own child process, the configurations in turns
// (--rounds), so a slow spell of a shared machine is not one configuration's.
//
// Default pair: Qwen2.5-Coder-1.5B-Instruct Q4_K_M drafted by Qwen2.5-Coder-0.5B-Instruct
// Q4_K_M (both `pull` entries). Prompts: "code" asks for a function back with one change (the
// output repeats the input: where prompt lookup shines), "prose" for a story (little to look up).
// Our greedy outputs with each proposer are checked equal to our plain output.
//
//   node bench/speculative.mjs [--tokens 128] [--gamma 4] [--rounds 2] [--prompts code,prose]
//       [--target ID|PATH] [--draft ID|PATH] [--no-peer]
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

import { Engine, fetchRegistryModel, runtimeInfo } from '@mistralrs/core';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const TOKENS = Number(opt('--tokens', 128));
const GAMMA = Number(opt('--gamma', 4));
const ROUNDS = Number(opt('--rounds', 2));
const PROMPTS = String(opt('--prompts', 'code,prose')).split(',');
const PEER = !argv.includes('--no-peer');

const CODE = `def merge_intervals(intervals):
    """Merge overlapping intervals given as (start, end) pairs."""
    if not intervals:
        return []
    intervals = sorted(intervals, key=lambda pair: pair[0])
    merged = [list(intervals[0])]
    for start, end in intervals[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total_covered(intervals):
    """The total length covered by the intervals."""
    return sum(end - start for start, end in merge_intervals(intervals))
`;
const MESSAGES = {
  code: `Rename the variable \`merged\` to \`result\` in this code and give back the whole code, nothing else:\n\n\`\`\`python\n${CODE}\`\`\``,
  prose: 'Write a short story about a lighthouse keeper who finds a message in a bottle.',
};

/** One configuration's run, in a child process: prints one JSON line. */
async function child(spec) {
  const { engine: which, mode, target, draft, promptIds } = spec;
  if (which === 'ours') {
    const speculative =
      mode === 'ngram'
        ? { kind: 'ngram', gamma: GAMMA, minN: 2 }
        : mode === 'draft'
          ? { kind: 'draft', draftModel: draft, gamma: GAMMA }
          : undefined;
    const engine = await Engine.load({ model: target, kvTokens: 4096, ...(speculative ? { speculative } : {}) });
    const t0 = performance.now();
    const r = await engine.complete({ prompt: promptIds, maxTokens: TOKENS, ignoreEos: true }).result;
    const ms = performance.now() - t0 - r.timings.promptMs;
    engine.close();
    return {
      tokens: r.tokenIds,
      tps: ((r.tokenIds.length - 1) / ms) * 1000,
      proposed: r.speculation?.proposed ?? 0,
      accepted: r.speculation?.accepted ?? 0,
    };
  }
  const { getLlama, LlamaCompletion, InputLookupTokenPredictor, DraftSequenceTokenPredictor } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const threads = runtimeInfo().threads;
  const model = await llama.loadModel({ modelPath: target });
  const context = await model.createContext({ contextSize: 4096, threads });
  let tokenPredictor;
  if (mode === 'ngram') tokenPredictor = new InputLookupTokenPredictor({ patternLength: { min: 2 }, predictionLength: { max: GAMMA } });
  if (mode === 'draft') {
    const draftModel = await llama.loadModel({ modelPath: draft });
    const draftContext = await draftModel.createContext({ contextSize: 4096, threads });
    tokenPredictor = new DraftSequenceTokenPredictor(draftContext.getSequence(), { maxTokens: GAMMA, minConfidence: 0 });
  }
  const sequence = context.getSequence(tokenPredictor ? { tokenPredictor } : {});
  const completion = new LlamaCompletion({ contextSequence: sequence });
  // The prompt alone first, so that the timed part is generation only.
  await sequence.evaluateWithoutGeneratingNewTokens(promptIds.slice(0, -1));
  const tokens = [];
  const t0 = performance.now();
  let first = 0;
  await completion.generateCompletion(promptIds, {
    maxTokens: TOKENS,
    temperature: 0,
    customStopTriggers: [],
    onToken: (t) => {
      if (tokens.length === 0) first = performance.now();
      tokens.push(...t);
    },
  });
  const ms = performance.now() - (first || t0);
  const stats = sequence.tokenPredictions;
  return { tokens, tps: ((tokens.length - 1) / ms) * 1000, proposed: stats.validated + stats.refuted, accepted: stats.validated };
}

if (argv[0] === '--child') {
  const result = await child(JSON.parse(argv[1]));
  console.log(JSON.stringify(result));
  process.exit(0);
}

const target = await resolve(opt('--target', 'qwen2.5-coder-1.5b-instruct-q4_k_m'));
const draft = await resolve(opt('--draft', 'qwen2.5-coder-0.5b-instruct-q4_k_m'));
async function resolve(m) {
  return m.includes('/') || m.endsWith('.gguf') ? m : fetchRegistryModel(m);
}

const plainEngine = await Engine.load({ model: target });
const promptIds = {};
for (const name of PROMPTS) {
  const rendered = await plainEngine.chat({ messages: [{ role: 'user', content: MESSAGES[name] }], maxTokens: 1 }).result;
  promptIds[name] = rendered.promptTokenIds;
}
plainEngine.close();

const engines = PEER ? ['ours', 'llama.cpp'] : ['ours'];
const modes = ['plain', 'ngram', 'draft'];
const samples = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const name of PROMPTS) {
    for (const engine of engines) {
      for (const mode of modes) {
        const spec = JSON.stringify({ engine, mode, target, draft, promptIds: promptIds[name] });
        const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', spec], { encoding: 'utf8', maxBuffer: 1 << 26 });
        if (r.status !== 0) {
          console.error(`${engine} ${mode} ${name} failed:\n${r.stderr}`);
          process.exit(1);
        }
        const out = JSON.parse(r.stdout.trim().split('\n').pop());
        const key = `${name}|${engine}|${mode}`;
        if (!samples.has(key)) samples.set(key, []);
        samples.get(key).push(out);
      }
    }
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`speculative decoding, greedy, ${TOKENS} tokens, gamma ${GAMMA}, ${ROUNDS} rounds (median tok/s)`);
console.log(`target ${target}\ndraft  ${draft}`);
console.log(`threads: ${runtimeInfo().threads} of ${availableParallelism()} cores; kernels: ${runtimeInfo().selectedIsa}`);
console.log('prompt | engine    | proposer | tok/s  | speedup | proposed | kept  | same tokens as plain');
let mismatch = false;
for (const name of PROMPTS) {
  for (const engine of engines) {
    const plain = samples.get(`${name}|${engine}|plain`);
    const base = median(plain.map((s) => s.tps));
    for (const mode of modes) {
      const runs = samples.get(`${name}|${engine}|${mode}`);
      const tps = median(runs.map((s) => s.tps));
      const proposed = runs[0].proposed;
      const kept = proposed > 0 ? `${((100 * runs[0].accepted) / proposed).toFixed(0)}%` : '-';
      const same = runs.every((s) => JSON.stringify(s.tokens.slice(0, TOKENS)) === JSON.stringify(plain[0].tokens.slice(0, TOKENS)));
      if (engine === 'ours' && !same) mismatch = true;
      console.log(
        [
          name.padEnd(6),
          engine.padEnd(9),
          mode.padEnd(8),
          tps.toFixed(1).padStart(6),
          `${(tps / base).toFixed(2)}×`.padStart(7),
          String(proposed).padStart(8),
          kept.padStart(5),
          same ? 'yes' : 'NO',
        ].join(' | '),
      );
    }
  }
}
if (mismatch) {
  console.error('our output with a proposer differs from our plain output: speculation must be exact');
  process.exit(1);
}
