/**
 * Every architecture we implement (llama, qwen2, gemma3), as a small random-weight model
 * written by our own GGUF writer, against llama.cpp (node-llama-cpp) on the same file: F16, Q8_0 and Q4_K weights.
 * The vocabulary is the real Llama SentencePiece one from the shared fixtures (llama.cpp needs
 * a vocabulary to load a model), the weights are seeded random numbers.
 *
 * Tolerance: with F16 weights llama.cpp rounds activations to f16 (we keep f32), with K-quants
 * its block sums run in another order; on these tiny models that moves logits by ~1e-3, so
 * first-step logits must agree within 0.02 and greedy tokens must agree until llama.cpp's own
 * margin between its token and ours is below 0.05.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type Llama } from 'node-llama-cpp';

import { GgufFile, quantize, writeGguf, type GgmlTypeName, type GgufMetadataEntry } from '@mistralrs/quant';

import { Engine } from '../../src/index.js';

const LOGIT_MAX_ABS = 0.02;
const TIE_MARGIN = 0.05;
const vocabPath = new URL('../../../../../shared/fixtures/vocab/ggml-vocab-llama-spm.gguf', import.meta.url).pathname;
const haveVocab = existsSync(vocabPath);
if (!haveVocab) console.warn(`SKIPPED tiny-model comparison: no vocabulary at ${vocabPath}`);

let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tiny-models-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Seeded uniform values in [-scale, scale). */
function random(seed: number, n: number, scale: number): Float32Array {
  let s = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13n;
    s &= 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= s << 17n;
    s &= 0xffffffffffffffffn;
    out[i] = (Number(s >> 40n) / 2 ** 24 - 0.5) * 2 * scale;
  }
  return out;
}

function f16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  values.forEach((v, i) => {
    // Round to nearest even f16 (values here are small and normal).
    f32[0] = v;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (exp <= 0) {
      out[i] = sign;
      return;
    }
    let h = sign | (exp << 10) | (mant >>> 13);
    mant &= 0x1fff;
    if (mant > 0x1000 || (mant === 0x1000 && (h & 1))) h++;
    out[i] = h;
  });
  return new Uint8Array(out.buffer);
}

type Arch = 'llama' | 'qwen2' | 'gemma3';

/**
 * A GGUF of `arch`: dim 256, 2 layers, 4 heads over 2 KV heads, tied embeddings; Qwen 2 adds
 * biases to Q, K and V; Gemma 3 QK-norms, post-norms and a sliding window of 4 tokens on its
 * first layer (so the window is exercised by the prompts).
 */
async function writeTinyModel(path: string, arch: Arch, type: GgmlTypeName): Promise<void> {
  const vocab = await GgufFile.open(vocabPath);
  const tokenizer = vocab.metadata.filter((e) => e.key.startsWith('tokenizer.'));
  const nVocab = vocab.getArray('tokenizer.ggml.tokens')!.length;
  vocab.close();
  const [dim, ff, layers, heads, kvHeads] = [256, 512, 2, 4, 2];
  const headDim = dim / heads;
  const metadata: GgufMetadataEntry[] = [
    { key: 'general.architecture', type: 'string', value: arch },
    { key: 'general.name', type: 'string', value: `tiny ${arch} ${type}` },
    { key: `${arch}.context_length`, type: 'u32', value: 512 },
    { key: `${arch}.embedding_length`, type: 'u32', value: dim },
    { key: `${arch}.block_count`, type: 'u32', value: layers },
    { key: `${arch}.feed_forward_length`, type: 'u32', value: ff },
    { key: `${arch}.attention.head_count`, type: 'u32', value: heads },
    { key: `${arch}.attention.head_count_kv`, type: 'u32', value: kvHeads },
    { key: `${arch}.attention.layer_norm_rms_epsilon`, type: 'f32', value: 1e-5 },
    { key: `${arch}.rope.freq_base`, type: 'f32', value: 10000 },
    { key: `${arch}.rope.dimension_count`, type: 'u32', value: headDim },
    ...(arch === 'gemma3'
      ? [
          { key: 'gemma3.attention.key_length', type: 'u32' as const, value: headDim },
          { key: 'gemma3.attention.value_length', type: 'u32' as const, value: headDim },
          { key: 'gemma3.attention.sliding_window', type: 'u32' as const, value: 4 },
        ]
      : []),
    ...tokenizer,
  ];
  let seed = 1;
  const matrix = async (name: string, cols: number, rows: number) => {
    const values = random(seed++, rows * cols, 0.5 / Math.sqrt(cols) * 3);
    const data = type === 'F16' ? f16Bytes(values) : await quantize(type, values);
    return { name, dims: [cols, rows], type, data };
  };
  const norm = (name: string, n = dim) => ({
    name,
    dims: [n],
    type: 'F32' as const,
    data: new Uint8Array(Float32Array.from(random(seed++, n, 0.2), (v) => 1 + v).buffer),
  });
  const bias = (name: string, n: number) => ({
    name,
    dims: [n],
    type: 'F32' as const,
    data: new Uint8Array(random(seed++, n, 0.5).buffer),
  });
  const tensors = [await matrix('token_embd.weight', dim, nVocab), norm('output_norm.weight')];
  for (let l = 0; l < layers; l++) {
    if (arch === 'gemma3') {
      tensors.push(
        norm(`blk.${l}.attn_q_norm.weight`, headDim),
        norm(`blk.${l}.attn_k_norm.weight`, headDim),
        norm(`blk.${l}.post_attention_norm.weight`),
        norm(`blk.${l}.post_ffw_norm.weight`),
      );
    }
    if (arch === 'qwen2') {
      tensors.push(
        bias(`blk.${l}.attn_q.bias`, heads * headDim),
        bias(`blk.${l}.attn_k.bias`, kvHeads * headDim),
        bias(`blk.${l}.attn_v.bias`, kvHeads * headDim),
      );
    }
    tensors.push(
      norm(`blk.${l}.attn_norm.weight`),
      await matrix(`blk.${l}.attn_q.weight`, dim, heads * headDim),
      await matrix(`blk.${l}.attn_k.weight`, dim, kvHeads * headDim),
      await matrix(`blk.${l}.attn_v.weight`, dim, kvHeads * headDim),
      await matrix(`blk.${l}.attn_output.weight`, heads * headDim, dim),
      norm(`blk.${l}.ffn_norm.weight`),
      await matrix(`blk.${l}.ffn_gate.weight`, dim, ff),
      await matrix(`blk.${l}.ffn_up.weight`, dim, ff),
      await matrix(`blk.${l}.ffn_down.weight`, ff, dim),
    );
  }
  await writeGguf(path, { metadata, tensors });
}

const PROMPTS = [
  [1, 450, 4996, 17354, 1701, 432],
  [1, 910, 338, 263, 1243, 310, 278, 11262, 1788, 29889, 306],
  [1, 29871, 13, 3166, 12655, 408, 7442],
];

const CASES = (['llama', 'qwen2', 'gemma3'] as const).flatMap((arch) => (['F16', 'Q8_0', 'Q4_K'] as const).map((type) => [arch, type] as const));

describe.each(haveVocab ? CASES : [])('tiny %s, %s weights', (arch, type) => {
  it('matches llama.cpp: first-step logits and greedy tokens', async () => {
    const path = join(dir, `tiny-${arch}-${type}.gguf`);
    await writeTinyModel(path, arch, type);
    const engine = await Engine.load({ model: path, kvTokens: 256 });
    const model = await llama.loadModel({ modelPath: path });
    const context = await model.createContext({ contextSize: 256, threads: 2, flashAttention: false });
    try {
      for (const prompt of PROMPTS) {
        const ours = await engine.complete({ prompt, maxTokens: 16, ignoreEos: true }).result;
        const oursFirst = await engine.nextTokenLogits(prompt);
        const seq = context.getSequence();
        try {
          let input = prompt;
          for (let step = 0; step < ours.tokenIds.length; step++) {
            const last = input.length - 1;
            const out = await seq.controlledEvaluate(
              input.map((t, i) => (i === last ? [t, { generateNext: { logits: true } }] : t)),
            );
            const logits = out[last]!.next!.logits as Map<number, number>;
            if (step === 0) {
              let maxAbs = 0;
              for (const [t, l] of logits) maxAbs = Math.max(maxAbs, Math.abs(oursFirst[t]! - l));
              console.log(`${arch} ${type} prompt of ${prompt.length}: first-step logits max |Δ| ${maxAbs.toExponential(2)}`);
              expect(maxAbs).toBeLessThan(LOGIT_MAX_ABS);
            }
            let best = -1;
            let bestLogit = -Infinity;
            for (const [t, l] of logits) if (l > bestLogit) [best, bestLogit] = [t, l];
            const ourToken = ours.tokenIds[step]!;
            if (best !== ourToken) {
              console.log(`${arch} ${type}: greedy diverges at token ${step} (margin ${(bestLogit - logits.get(ourToken)!).toFixed(4)})`);
              expect(bestLogit - logits.get(ourToken)!).toBeLessThan(TIE_MARGIN);
              break;
            }
            input = [best];
          }
        } finally {
          seq.dispose();
        }
      }
    } finally {
      engine.close();
      await context.dispose();
      await model.dispose();
    }
  }, 180_000);
});
