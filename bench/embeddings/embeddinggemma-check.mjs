// EmbeddingGemma-300m (the registry model `embeddinggemma-300m`, 1.2 GB of f32 safetensors)
// against sentence-transformers: the token ids each side fed the model, the largest |Δ| and
// the lowest cosine of the embeddings, for 8 texts without a prompt and with the prompts
// `query` and `document`; then the throughput of both on this machine (texts/s, tokens/s), in
// runs that each embed all 24 inputs, theirs and ours alternating so that both see the same
// load. A manual check, never CI.
//
//   REFERENCE_PYTHON=/path/to/python node bench/embeddings/embeddinggemma-check.mjs [MODEL_DIR]
//
// REFERENCE_PYTHON (default python3) needs torch, transformers and sentence-transformers; it
// runs embeddinggemma_reference.py beside this file. Without MODEL_DIR the registry model is
// fetched (`mistralrs-server pull embeddinggemma-300m`). `RUNS` (default 5) sets the timed
// runs of each side, `THREADS` the threads of both (torch's, and ours: MISTRALRS_NUM_THREADS;
// default this machine's cores). On a machine that other work shares, try THREADS=1 too: torch
// slowed ninefold at 2 threads beside other processes on 2 cores (its threads wait on each
// other). Exits 1 when the token ids differ or an embedding is off by more than 1e-4.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const TOLERANCE = 1e-4;
const RUNS = Number(process.env.RUNS ?? 5);
const THREADS = Number(process.env.THREADS ?? availableParallelism());
// Read by our thread pool when it starts, after this.
process.env.MISTRALRS_NUM_THREADS = String(THREADS);
const { EmbeddingModel, fetchRegistryModel } = await import('@mistralrs/core');
const PROMPT_NAMES = [null, 'query', 'document'];
const TEXTS = [
  'Paris',
  'What is the capital of France?',
  'Paris is the capital and the largest city of France.',
  'café — naïve 🙂 über straße',
  'def add(a, b):\n    return a + b',
  '日本の首都は東京です。',
  'The quick brown fox jumps over the lazy dog. Search engines turn each document into a vector, ' +
    'and a query into another vector; the nearest documents are returned first.',
  '  leading and trailing spaces  ',
];

const modelDir = process.argv[2] ?? (await fetchRegistryModel('embeddinggemma-300m'));
const python = process.env.REFERENCE_PYTHON ?? 'python3';
const work = mkdtempSync(join(tmpdir(), 'embeddinggemma-check-'));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function compare(ours, theirs) {
  let maxDiff = 0;
  let dot = 0;
  let a = 0;
  let b = 0;
  for (let i = 0; i < theirs.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
    dot += ours[i] * theirs[i];
    a += ours[i] * ours[i];
    b += theirs[i] * theirs[i];
  }
  return { maxDiff, cosine: dot / Math.sqrt(a * b) };
}

/** sentence-transformers in a child process: its ids and embeddings, then timed runs on request. */
async function startReference() {
  const cases = join(work, 'cases.json');
  const out = join(work, 'reference.json');
  writeFileSync(cases, JSON.stringify({ texts: TEXTS, prompt_names: PROMPT_NAMES, threads: THREADS }));
  console.log(`sentence-transformers (${python}) on ${modelDir} ...`);
  const script = new URL('embeddinggemma_reference.py', import.meta.url).pathname;
  const child = spawn(python, [script, modelDir, cases, out], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`${python} ${script} ended early (exit ${child.exitCode ?? 'pending'})`);
    return value;
  };
  if ((await next()) !== 'ready') throw new Error(`${python} ${script} did not start`);
  return {
    ...JSON.parse(readFileSync(out, 'utf8')),
    /** Seconds of one run of theirs. */
    async time() {
      child.stdin.write('time\n');
      return Number(await next());
    },
    async close() {
      child.stdin.end();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** Token ids and embeddings, ours against theirs; true when all agree. */
async function checkAccuracy(model, reference) {
  console.log('prompt      ids equal   max |Δ|     lowest cosine');
  let worst = 0;
  let sameAll = true;
  for (const c of reference.cases) {
    const options = c.prompt_name === null ? {} : { promptName: c.prompt_name };
    const ids = await model.tokenize(TEXTS, options);
    const same = ids.map((seq, i) => seq.join() === c.token_ids[i].join());
    same.forEach((ok, i) => {
      if (!ok) console.log(`  text ${i}: ours [${ids[i].join()}]\n          theirs [${c.token_ids[i].join()}]`);
    });
    sameAll &&= same.every(Boolean);
    const { embeddings } = await model.embed(TEXTS, options);
    const figures = embeddings.map((e, i) => compare(e, c.embeddings[i]));
    const maxDiff = Math.max(...figures.map((f) => f.maxDiff));
    const cosine = Math.min(...figures.map((f) => f.cosine));
    worst = Math.max(worst, maxDiff);
    const name = String(c.prompt_name ?? '(none)');
    console.log(`${name.padEnd(12)}${String(same.every(Boolean)).padEnd(12)}${maxDiff.toExponential(2).padEnd(12)}${cosine.toFixed(12)}`);
  }
  console.log(`largest |Δ| ${worst.toExponential(2)} (bound ${TOLERANCE})\n`);
  return sameAll && worst <= TOLERANCE;
}

async function compareThroughput(model, reference) {
  const inputs = TEXTS.length * PROMPT_NAMES.length;
  const tokens = reference.cases.reduce((n, c) => n + c.token_ids.reduce((m, ids) => m + ids.length, 0), 0);
  const ours = async () => {
    const start = process.hrtime.bigint();
    for (const name of PROMPT_NAMES) await model.embed(TEXTS, name === null ? {} : { promptName: name });
    return Number(process.hrtime.bigint() - start) / 1e9;
  };
  await reference.time(); // warm-up, both
  await ours();
  const times = { ours: [], theirs: [] };
  for (let i = 0; i < RUNS; i++) {
    times.theirs.push(await reference.time());
    times.ours.push(await ours());
  }
  const rate = (s) => `${(inputs / s).toFixed(1).padStart(6)} texts/s ${(tokens / s).toFixed(0).padStart(6)} tokens/s`;
  const row = (label, xs) => `  ${label.padEnd(23)}${rate(median(xs))}  ${median(xs).toFixed(3)} s (min ${Math.min(...xs).toFixed(3)} s)`;
  console.log(`throughput: ${inputs} inputs, ${tokens} tokens per run; median of ${RUNS} runs each, alternating`);
  console.log(row('ours', times.ours));
  console.log(row('sentence-transformers', times.theirs));
  const ratios = times.theirs.map((t, i) => t / times.ours[i]);
  console.log(`  theirs / ours: ${median(ratios).toFixed(2)}× (median of the paired runs)`);
}

const loadBefore = loadavg()[0];
const reference = await startReference();
let passed = false;
try {
  const model = await EmbeddingModel.load({ model: modelDir });
  try {
    const { architecture, bidirectional, pooling, denseLayers, normalize, dimensions, maxTokens } = model.info;
    console.log(`ours: ${JSON.stringify({ architecture, bidirectional, pooling, denseLayers, normalize, dimensions, maxTokens })}`);
    console.log(`reference: ${JSON.stringify(reference.versions)}; ${reference.threads} torch threads, ${THREADS} of ours\n`);
    passed = await checkAccuracy(model, reference);
    await compareThroughput(model, reference);
    console.log(`load average: ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after (${availableParallelism()} cores)`);
  } finally {
    await model.close();
  }
} finally {
  await reference.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(passed ? 0 : 1);
