import { beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEFAULT_MODEL_ID, Engine, fetchRegistryModel } from '@mistralrs/core';

const bin = new URL('../bin/mistralrs-server.js', import.meta.url).pathname;
let modelPath: string;

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  modelPath = await fetchRegistryModel(DEFAULT_MODEL_ID);
}, 300_000);

describe('mistralrs-server with the default model', () => {
  it('speculates by prompt lookup with --speculative ngram: the same tokens, the proposals counted', () => {
    const args = ['--prompt', 'Repeat exactly: one two three four five six seven eight', '-n', '16', '--json'];
    const plain = cli(args);
    const spec = cli([...args, '--speculative', 'ngram', '--ngram-min', '1', '--throughput']);
    expect(spec.code).toBe(0);
    const [a, b] = [JSON.parse(plain.stdout), JSON.parse(spec.stdout)];
    expect(b.token_ids).toEqual(a.token_ids);
    expect(a.speculation).toBeUndefined();
    expect(b.speculation.proposed_tokens).toBeGreaterThan(0);
    expect(b.speculation.accepted_tokens).toBeGreaterThan(0);
    expect(spec.stderr).toMatch(/; speculation: \d+ of \d+ proposed tokens kept\n$/);
  });

  it('answers one prompt as JSON: the template-applied prompt ids, the tokens, the speeds', async () => {
    const { code, stdout, stderr } = cli(['--prompt', 'Who wrote Hamlet?', '-n', '8', '--json']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.finish_reason).toBe('length');
    expect(out.token_ids).toHaveLength(8);
    expect(out.prompt_tps).toBeGreaterThan(0);
    expect(out.generation_tps).toBeGreaterThan(0);
    expect(out.usage).toEqual({
      prompt_tokens: out.prompt_token_ids.length,
      completion_tokens: 8,
      total_tokens: out.prompt_token_ids.length + 8,
    });

    // Exactly what the model saw: the chat template rendered and tokenized by the engine.
    const engine = await Engine.load({ model: modelPath, kvTokens: 512 });
    const prompt = await engine.chatTemplate!.render({
      messages: [{ role: 'user', content: 'Who wrote Hamlet?' }],
      addGenerationPrompt: true,
    });
    expect(out.prompt_token_ids).toEqual(engine.encodeChatPrompt(prompt));
    expect(engine.tokenizer.decode(out.token_ids, { skipSpecialTokens: true })).toBe(out.text);
    // Greedy is deterministic: the library gives the same tokens.
    const again = await engine.complete({ prompt: out.prompt_token_ids, maxTokens: 8 }).result;
    expect(again.tokenIds).toEqual(out.token_ids);
    engine.close();
  }, 120_000);

  it('chats interactively from piped input: commands, turns, exit', () => {
    const { code, stdout } = cli(['gguf', '-m', modelPath, '-i', '-n', '6'], 'Hello!\n\\help\n\\clear\n\\bogus\nBye\n\\exit\n');
    expect(code).toBe(0);
    expect(stdout).toContain('Chatting with');
    expect(stdout).toContain('\\clear    forget the conversation');
    expect(stdout).toContain('(conversation cleared)');
    expect(stdout).toContain('unknown command \\bogus');
    // Two replies were generated, each followed by a new prompt.
    expect(stdout.split('\n> ').length).toBeGreaterThanOrEqual(6);
  }, 120_000);

  it("sizes the chat's KV cache with --pa-ctxt-len and --pa-blk-size: the context ends where the cache does", () => {
    const args = ['--prompt', 'Who wrote Hamlet?', '-n', '64', '--json', '--pa-blk-size', '16', '--max-running', '1', '--no-prefix-cache'];
    // 3 blocks of 16: the 34-token prompt leaves room for 14 tokens.
    const fits = cli([...args, '--pa-ctxt-len', '48']);
    expect(fits.code).toBe(0);
    const out = JSON.parse(fits.stdout);
    expect(out.usage.total_tokens).toBeLessThanOrEqual(48);

    // 2 blocks: the prompt no longer fits. The engine's error is one line, no stack trace.
    const tooSmall = cli([...args, '--pa-ctxt-len', '32']);
    expect(tooSmall.code).toBe(1);
    expect(tooSmall.stderr).toMatch(/^mistralrs-server: the prompt has \d+ tokens; the context holds 32 .*\n$/);
  }, 120_000);

  it('fails with exit code 1 and a clear message on bad input', () => {
    const missing = cli(['gguf', '-m', '/nonexistent/model.gguf', '--prompt', 'hi']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('/nonexistent/model.gguf');

    const tooLong = cli(['--prompt', 'word '.repeat(9000), '-n', '4']);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toMatch(/the prompt has \d+ tokens; the context holds 8192/);

    const plain = cli(['plain', '-m', '/nonexistent-folder']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain('/nonexistent-folder');
  }, 120_000);

  it('constrains the output with --grammar-file and --grammar, and names a bad grammar file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-grammar-'));
    try {
      const schemaFile = join(dir, 'answer.json');
      const schema = {
        type: 'object',
        properties: { city: { enum: ['Paris', 'Rome'] }, rank: { type: 'integer', minimum: 1, maximum: 9 } },
        required: ['city', 'rank'],
        additionalProperties: false,
      };
      writeFileSync(schemaFile, JSON.stringify(schema));
      const json = cli(['--prompt', 'Name a city.', '-n', '40', '--grammar-file', schemaFile]);
      expect(json.code).toBe(0);
      const value = JSON.parse(json.stdout) as { city: string; rank: number };
      expect(['Paris', 'Rome']).toContain(value.city);
      expect(Number.isInteger(value.rank)).toBe(true);

      const regex = cli(['--prompt', 'Is the sky blue?', '-n', '10', '--grammar', '(yes|no)!', '--grammar-type', 'regex']);
      expect(regex.code).toBe(0);
      expect(regex.stdout.trim()).toMatch(/^(yes|no)!$/);

      const badFile = join(dir, 'bad.lark');
      writeFileSync(badFile, 'start: missing_rule');
      const bad = cli(['--prompt', 'Hi', '-n', '4', '--grammar-file', badFile]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`grammar file ${badFile}`);
      expect(bad.stderr).toContain('missing_rule');

      const absent = cli(['--prompt', 'Hi', '--grammar-file', join(dir, 'absent.json')]);
      expect(absent.code).toBe(1);
      expect(absent.stderr).toContain('absent.json: no such file');

      const untyped = cli(['--prompt', 'Hi', '--grammar', 'a+']);
      expect(untyped.code).toBe(1);
      expect(untyped.stderr).toContain('--grammar needs --grammar-type');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
