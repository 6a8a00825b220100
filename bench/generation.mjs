// Prompt processing and generation speed, ours against llama.cpp, on the same files and the
// same thread count, in one run:
//   - node-llama-cpp (llama.cpp through its Node binding: adds per-token overhead);
//   - llama.cpp's own `llama-bench`, when built (bash bench/build-llama-bench.sh, outside CI);
//   - generation as a fraction of the bandwidth bound: weight bytes read per token × tokens/s
//     ÷ the read bandwidth the native probe measures in the same run (median of its passes);
//   - generation at context depths (default 0, 2048, 8192; clamped to the model's context);
//   - peak resident memory of each engine (each runs in its own child process).
// A shared machine's speed drifts by tens of percent within minutes: with --rounds N the three
// engines take turns N times and their samples are pooled, so a slow spell is not one engine's.
// Models: the default SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M, and random-weight
// Llama-3.2-1B-shaped models in Q4_0, Q4_K_M and Q8_0 written by our GGUF writer into the cache
// (speed does not depend on the weights' values; --no-synthetic skips them).
//
//   cargo build --release -p mistralrs-bench --bin bandwidth   # once, for the bandwidth probe
//   node bench/generation.mjs [--reps 3] [--rounds 1] [--pp 512] [--tg 128] [--depths 0,2048,8192] [--models a,b]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cacheDir, Engine, fetchRegistryModel, runtimeInfo } from '@mistralrs/core';
import { GgufFile, quantize, writeGguf } from '@mistralrs/quant';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
/** A whole number option (at least `min`), or a clear exit. */
const count = (name, dflt, min = 1) => {
  const text = String(opt(name, dflt));
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`bench/generation.mjs: ${name} takes a whole number of at least ${min}, not "${text}"`);
    process.exit(2);
  }
  return n;
};
const REPS = count('--reps', 3);
const PP = count('--pp', 512);
const TG = count('--tg', 128);
const DEPTHS = String(opt('--depths', '0,2048,8192'))
  .split(',')
  .map((d) => {
    const n = Number(d);
    if (!Number.isInteger(n) || n < 0) {
      console.error(`bench/generation.mjs: --depths takes whole numbers separated by commas, not "${d}"`);
      process.exit(2);
    }
    return n;
  });
// Rounds of ours, node-llama-cpp and llama-bench taken in turn, so that a busy spell of a
// shared machine falls on all of them rather than on whichever ran then (depths: first round).
const ROUNDS = count('--rounds', 1);
const DEPTH_TG = 32;
const threads = runtimeInfo().threads;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => (xs?.length ? `${median(xs).toFixed(1).padStart(7)} (min ${Math.min(...xs).toFixed(1)})` : '      —         ');
const ratio = (a, b) => (a?.length && b?.length ? `${(median(a) / median(b)).toFixed(2)}x` : '—');

/** A fixed pseudo-random prompt of ordinary tokens, the same for every engine. */
const promptOf = (n, vocab) => Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % (vocab - 2000)));

async function runOurs(path) {
  const out = { pp: [], tg: [], depth: {} };
  let engine = await Engine.load({ model: path, kvTokens: PP + TG + 64, prefixCaching: false });
  const vocab = engine.info.vocabSize;
  // As llama-bench measures them: the prompt alone, and generation from an empty context.
  for (let r = 0; r < REPS; r++) {
    const pp = await engine.complete({ prompt: promptOf(PP, vocab), maxTokens: 1, ignoreEos: true }).result;
    out.pp.push(pp.timings.promptTps);
    const tg = await engine.complete({ prompt: promptOf(1, vocab), maxTokens: TG + 1, ignoreEos: true }).result;
    out.tg.push(tg.timings.generationTps);
  }
  engine.close();
  for (const depth of flag('--no-depths') ? [] : depthsFor(engine.info.contextLength)) {
    engine = await Engine.load({ model: path, kvTokens: depth + DEPTH_TG + 64, prefixCaching: false });
    const res = await engine.complete({ prompt: promptOf(Math.max(depth, 1), vocab), maxTokens: DEPTH_TG, ignoreEos: true }).result;
    out.depth[depth] = res.timings.generationTps;
    engine.close();
  }
  return out;
}

async function runPeer(path) {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: path });
  const vocab = Number(opt('--vocab', 32000));
  const out = { pp: [], tg: [], depth: {} };
  const measure = async (ctx, prompt, n) => {
    const seq = ctx.getSequence();
    const t = performance.now();
    let generated = 0;
    let promptDone = 0;
    for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
      if (generated === 0) promptDone = performance.now();
      if (++generated >= n) break;
    }
    const end = performance.now();
    seq.dispose();
    return { pp: (prompt.length / (promptDone - t)) * 1000, tg: ((generated - 1) / (end - promptDone)) * 1000 };
  };
  let ctx = await model.createContext({ contextSize: PP + TG + 64, threads, batchSize: PP });
  for (let r = 0; r < REPS; r++) {
    out.pp.push((await measure(ctx, promptOf(PP, vocab), 1)).pp);
    out.tg.push((await measure(ctx, promptOf(1, vocab), TG + 1)).tg);
  }
  await ctx.dispose();
  for (const depth of flag('--no-depths') ? [] : depthsFor(model.trainContextSize)) {
    ctx = await model.createContext({ contextSize: depth + DEPTH_TG + 64, threads, batchSize: 512 });
    out.depth[depth] = (await measure(ctx, promptOf(Math.max(depth, 1), vocab), DEPTH_TG)).tg;
    await ctx.dispose();
  }
  await model.dispose();
  await llama.dispose();
  return out;
}

/** The depths asked for, each clamped so that it and the generated tokens fit the context. */
function depthsFor(context) {
  return [...new Set(DEPTHS.map((d) => Math.min(d, context - DEPTH_TG - 64)))];
}

// ---- a child process: one engine on one model, results as JSON on the last line ----

if (opt('--worker')) {
  const result = opt('--worker') === 'ours' ? await runOurs(opt('--model')) : await runPeer(opt('--model'));
  result.maxRssMb = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify(result));
  process.exit(0);
}

// ---- the parent: models, probes, children, table ----

/** Llama-3.2-1B-shaped random weights (speed does not depend on them) in `type`. */
async function syntheticLlama1b(type) {
  const dir = join(cacheDir(), 'bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `llama-3.2-1b-shaped-random-${type}.gguf`);
  if (existsSync(path)) return path;
  const [dim, layers, heads, kvHeads, ff] = [2048, 16, 32, 8, 8192];
  const hd = dim / heads;
  // Llama 3's 128256-token vocabulary, so that llama.cpp loads the file as it would the real one.
  const vocab = await GgufFile.open(join(root, '..', 'shared', 'fixtures', 'vocab', 'ggml-vocab-llama-bpe.gguf'));
  const tokenizer = vocab.metadata.filter((e) => e.key.startsWith('tokenizer.'));
  const nVocab = vocab.getArray('tokenizer.ggml.tokens')?.length ?? 128256;
  vocab.close();
  const u32 = (key, value) => ({ key: `llama.${key}`, type: 'u32', value });
  const metadata = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: `random weights shaped as Llama 3.2 1B, ${type}` },
    u32('context_length', 131072),
    u32('embedding_length', dim),
    u32('block_count', layers),
    u32('feed_forward_length', ff),
    u32('attention.head_count', heads),
    u32('attention.head_count_kv', kvHeads),
    { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: 1e-5 },
    { key: 'llama.rope.freq_base', type: 'f32', value: 500000 },
    u32('rope.dimension_count', hd),
    ...tokenizer,
  ];
  let seed = 1;
  const random = (n, scale) => {
    let s = (seed++ * 2654435761) >>> 0 || 1;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
    }
    return out;
  };
  // Q4_K_M as llama.cpp's quantizer mixes it: Q6_K for the (tied) embeddings and for attn_v
  // and ffn_down in the first and last eighth of the layers and every third between.
  const moreBits = (l) => l < layers / 8 || l >= (7 * layers) / 8 || (l - layers / 8) % 3 === 2;
  const typeOf = (name, l) => {
    if (type !== 'Q4_K_M') return type;
    if (name === 'token_embd.weight') return 'Q6_K';
    return (name.endsWith('attn_v.weight') || name.endsWith('ffn_down.weight')) && moreBits(l) ? 'Q6_K' : 'Q4_K';
  };
  const tensors = [];
  const matrix = async (name, rows, cols, l = -1) => {
    const t = typeOf(name, l);
    tensors.push({ name, dims: [cols, rows], type: t, data: await quantize(t, random(rows * cols, 1 / Math.sqrt(cols))) });
  };
  const norm = (name) =>
    tensors.push({ name, dims: [dim], type: 'F32', data: new Uint8Array(Float32Array.from({ length: dim }, () => 1).buffer) });
  await matrix('token_embd.weight', nVocab, dim);
  norm('output_norm.weight');
  for (let l = 0; l < layers; l++) {
    norm(`blk.${l}.attn_norm.weight`);
    await matrix(`blk.${l}.attn_q.weight`, heads * hd, dim, l);
    await matrix(`blk.${l}.attn_k.weight`, kvHeads * hd, dim, l);
    await matrix(`blk.${l}.attn_v.weight`, kvHeads * hd, dim, l);
    await matrix(`blk.${l}.attn_output.weight`, dim, heads * hd, l);
    norm(`blk.${l}.ffn_norm.weight`);
    await matrix(`blk.${l}.ffn_gate.weight`, ff, dim, l);
    await matrix(`blk.${l}.ffn_up.weight`, ff, dim, l);
    await matrix(`blk.${l}.ffn_down.weight`, dim, ff, l);
  }
  await writeGguf(path, { metadata, tensors });
  return path;
}

/** Bytes of weights one generated token reads: every matrix once, the embedding table only
 * when it is also the output head (tied), else one row of it. */
async function bytesPerToken(path) {
  const file = await GgufFile.open(path);
  try {
    const tied = !file.tensors.some((t) => t.name === 'output.weight');
    return file.tensors.reduce((sum, t) => sum + (t.name === 'token_embd.weight' && !tied ? 0 : Number(t.sizeBytes)), 0);
  } finally {
    file.close();
  }
}

function bandwidthGbps() {
  for (const dir of ['target/release', `target/${process.arch === 'x64' ? 'x86_64' : 'aarch64'}-unknown-linux-gnu/release`]) {
    const bin = join(root, dir, 'bandwidth');
    if (existsSync(bin)) return JSON.parse(execFileSync(bin, ['--runs', '9'], { encoding: 'utf8' }).trim()).median_gbps;
  }
  console.log('(no bandwidth probe: cargo build --release -p mistralrs-bench --bin bandwidth)');
  return undefined;
}

function llamaBenchPath() {
  const info = JSON.parse(readFileSync(join(here, 'node_modules', 'node-llama-cpp', 'llama', 'llama.cpp.info.json'), 'utf8'));
  const bin = join(cacheDir(), 'llama.cpp', info.tag, 'build', 'bin', 'llama-bench');
  return existsSync(bin) ? bin : undefined;
}

/** llama-bench's pp and tg tokens/s (each of its repetitions). */
function llamaBench(bin, path) {
  const r = spawnSync(bin, ['-m', path, '-p', String(PP), '-n', String(TG), '-t', String(threads), '-r', String(REPS), '-o', 'json'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) return { error: (r.stderr || r.stdout).split('\n').slice(-3).join(' ') };
  const rows = JSON.parse(r.stdout);
  const samples = (test) =>
    rows.find((row) => (test === 'pp' ? row.n_prompt === PP && row.n_gen === 0 : row.n_gen === TG && row.n_prompt === 0))?.samples_ts ?? [];
  return { pp: samples('pp'), tg: samples('tg') };
}

function child(kind, path, extra = []) {
  const r = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--worker', kind, '--model', path, '--vocab', String(vocabOf.get(path)), ...argv, ...extra],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    return { error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' ') };
  }
}

/** Two rounds' results of one engine as one: samples together, depths of the round that ran
 * them, the higher peak memory, the first error. */
function merged(a, b) {
  const peaks = [a.maxRssMb, b.maxRssMb].filter((x) => x !== undefined);
  return {
    pp: [...(a.pp ?? []), ...(b.pp ?? [])],
    tg: [...(a.tg ?? []), ...(b.tg ?? [])],
    depth: { ...(b.depth ?? {}), ...(a.depth ?? {}) },
    maxRssMb: peaks.length ? Math.max(...peaks) : undefined,
    error: a.error ?? b.error,
  };
}

/** Each model's vocabulary size, for the peer's prompt (the same tokens as ours). */
const vocabOf = new Map();

const MODELS = {
  'smollm2-135m-instruct-q4_1': () => fetchRegistryModel('smollm2-135m-instruct-q4_1'),
  'gemma3-270m-q4_k_m': () => fetchRegistryModel('gemma3-270m-q4_k_m'),
  'llama-3.2-1b-shaped-q4_0': () => syntheticLlama1b('Q4_0'),
  'llama-3.2-1b-shaped-q4_k_m': () => syntheticLlama1b('Q4_K_M'),
  'llama-3.2-1b-shaped-q8_0': () => syntheticLlama1b('Q8_0'),
};
const chosen = opt(
  '--models',
  Object.keys(MODELS)
    .filter((m) => !flag('--no-synthetic') || !m.startsWith('llama-3.2'))
    .join(','),
).split(',');

console.log(
  `threads: ${threads} of ${availableParallelism()} cores; kernels: ${runtimeInfo().selectedIsa}; ${REPS} repetitions × ${ROUNDS} rounds`,
);
const bandwidth = bandwidthGbps();
if (bandwidth) console.log(`memory read bandwidth (median of 9 passes, ${threads} threads): ${bandwidth.toFixed(1)} GB/s`);
const benchBin = llamaBenchPath();
if (!benchBin) console.log('(no llama-bench: bash bench/build-llama-bench.sh builds it once, outside CI)');

for (const id of chosen) {
  const make = MODELS[id];
  if (!make) {
    console.log(`\n${id}: unknown model (${Object.keys(MODELS).join(', ')})`);
    continue;
  }
  const path = await make();
  const file = await GgufFile.open(path);
  vocabOf.set(path, file.getArray('tokenizer.ggml.tokens')?.length ?? 32000);
  file.close();
  let [ours, peer, bench] = [{}, {}, benchBin ? {} : undefined];
  for (let round = 0; round < ROUNDS; round++) {
    const extra = round > 0 ? ['--no-depths'] : [];
    ours = merged(ours, child('ours', path, extra));
    peer = merged(peer, child('peer', path, extra));
    if (benchBin) bench = merged(bench, llamaBench(benchBin, path));
  }
  console.log(`\n${id}  (${path})`);
  for (const [name, r] of [
    ['ours', ours],
    ['node-llama-cpp', peer],
    ['llama-bench', bench],
  ]) {
    if (r?.error) console.log(`  ${name}: failed: ${r.error}`);
  }
  console.log(`            ours                 node-llama-cpp       llama-bench          ours/nlc  ours/llama-bench`);
  for (const k of ['pp', 'tg']) {
    const label = k === 'pp' ? `pp${PP}` : `tg${TG}`;
    console.log(
      `  ${label.padEnd(6)}  ${fmt(ours[k])}  ${fmt(peer[k])}  ${fmt(bench?.[k])}  ${ratio(ours[k], peer[k]).padEnd(8)}  ${ratio(ours[k], bench?.[k])}`,
    );
  }
  if (bandwidth && ours.tg?.length) {
    const bytes = await bytesPerToken(path);
    const bound = (bandwidth * 1e9) / bytes;
    const share = (r) => (r?.length ? `${((median(r) / bound) * 100).toFixed(0)} %` : '—');
    console.log(
      `  generation vs the bandwidth bound (${(bytes / 2 ** 20).toFixed(0)} MiB/token → ${bound.toFixed(0)} tok/s): ours ${share(ours.tg)}, node-llama-cpp ${share(peer.tg)}, llama-bench ${share(bench?.tg)}`,
    );
  }
  const depths = Object.keys(ours.depth ?? {});
  if (depths.length) {
    const row = (r) => depths.map((d) => (r.depth?.[d] ? r.depth[d].toFixed(1) : '—').padStart(8)).join('');
    console.log(`  tg${DEPTH_TG} at depth ${depths.map((d) => d.padStart(8)).join('')}`);
    console.log(`    ours        ${row(ours)}`);
    console.log(`    n-llama-cpp ${row(peer)}`);
  }
  console.log(
    `  peak resident memory: ours ${ours.maxRssMb?.toFixed(0) ?? '—'} MiB, node-llama-cpp ${peer.maxRssMb?.toFixed(0) ?? '—'} MiB`,
  );
}
