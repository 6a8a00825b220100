// Tokenizer speed, ours against llama.cpp (node-llama-cpp) on the same vocabulary GGUFs:
// encoding ~100 kB of English text, median of several runs, in one process.
//
//   pnpm --filter @mistralrs/bench tokenizer            (after ./scripts/setup.sh)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getLlama } from 'node-llama-cpp';
import { Tokenizer } from '@mistralrs/core';

const vocabDir = new URL('../../shared/fixtures/vocab', import.meta.url).pathname;
const vocabs = ['ggml-vocab-llama-bpe.gguf', 'ggml-vocab-llama-spm.gguf', 'ggml-vocab-gpt-2.gguf', 'ggml-vocab-bert-bge.gguf'];

/** ~100 kB of real English prose: the licence texts Debian ships, else package licences. */
function englishText(bytes = 100_000) {
  const dirs = ['/usr/share/common-licenses', new URL('../node_modules/.pnpm', import.meta.url).pathname];
  const parts = [];
  let size = 0;
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) {
      const p = join(dir, f);
      try {
        const text = readFileSync(p, 'utf8');
        // Printable ASCII, tabs and line breaks only: the corpus is plain text files.
        // biome-ignore lint/suspicious/noControlCharactersInRegex: tab, LF and CR are the point
        if (!/^[\x09\x0a\x0d\x20-\x7e]*$/.test(text.slice(0, 2000))) continue;
        parts.push(text);
        size += text.length;
      } catch {
        continue;
      }
      if (size >= bytes) return parts.join('\n').slice(0, bytes);
    }
  }
  return parts.join('\n').padEnd(bytes, ' The quick brown fox jumps over the lazy dog.');
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(fn, runs = 7) {
  const out = [];
  let result;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    result = fn();
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { ms: median(out), min: Math.min(...out), result };
}

const text = englishText();
console.log(`text: ${text.length} characters of English`);
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
console.log('vocabulary                  tokens   ours ms (min)    llama.cpp ms (min)   ratio (peer/ours)');
for (const name of vocabs) {
  const path = join(vocabDir, name);
  if (!existsSync(path)) {
    console.log(`${name}: missing, skipped`);
    continue;
  }
  const ours = await Tokenizer.fromGguf(path);
  const peer = await llama.loadModel({ modelPath: path, vocabOnly: true });
  const a = time(() => ours.encode(text, { addSpecialTokens: false }));
  const b = time(() => peer.tokenize(text, false));
  const same = a.result.length === b.result.length && a.result.every((v, i) => v === b.result[i]);
  console.log(
    `${name.padEnd(27)} ${String(a.result.length).padStart(6)}   ${a.ms.toFixed(1).padStart(6)} (${a.min.toFixed(1)})` +
      `     ${b.ms.toFixed(1).padStart(8)} (${b.min.toFixed(1)})       ${(b.ms / a.ms).toFixed(2)}x${same ? '' : '  (token ids differ!)'}`,
  );
  await peer.dispose();
}
await llama.dispose();
