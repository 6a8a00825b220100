/**
 * Constrained decoding in the engine, on the default model: the native step masks the logits
 * to what the grammar allows and returns the tokens it forces; the engine feeds those in one
 * step; constrained sequences stay batch-invariant through preemption; tool-call formats
 * read back what they write.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { detectToolCallFormat, Engine, fetchRegistryModel, planToolChat, ToolCallStream, type ChatTool } from '../../src/index.js';
import { binding } from '../../src/native.js';

let path: string;
let engine: Engine;
beforeAll(async () => {
  path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
  engine = await Engine.load({ model: path, kvTokens: 1024 });
}, 300_000);
afterAll(() => engine?.close());

describe('the native step', () => {
  it('allows only what the grammar allows, and returns forced tokens with the sampled one', async () => {
    const literal = 'The answer, as the grammar of this request requires, is: ';
    const constraint = await engine.compileGrammar({ type: 'regex', value: `${literal}[0-9]` });
    const model = await binding.loadModel(path, { kvTokens: 256 });
    const prompt = Uint32Array.from(engine.encodeChatPrompt('<|im_start|>user\nGive a digit.<|im_end|>\n<|im_start|>assistant\n'));
    model.addSequence(1, { temperature: 0 }, undefined, constraint, undefined);
    const [first] = await model.step([
      { seqId: 1, tokens: prompt, startPos: 0, blockTable: Uint32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), sample: true },
    ]);
    const forced = first!.forced ?? [];
    // The first token is sampled from the masked logits; the rest of the literal is forced.
    expect(forced.length).toBeGreaterThan(5);
    expect(engine.tokenizer.decode([first!.token!, ...forced])).toBe(literal);
    const [second] = await model.step([
      {
        seqId: 1,
        tokens: Uint32Array.from([first!.token!, ...forced]),
        startPos: prompt.length,
        blockTable: Uint32Array.from([0, 1, 2, 3, 4, 5, 6, 7]),
        sample: true,
      },
    ]);
    expect(engine.tokenizer.decode([second!.token!])).toMatch(/^[0-9]$/);
  }, 60_000);

  it('lists the tokens a compiled grammar allows first', async () => {
    const constraint = await engine.compileGrammar({ type: 'lark', value: 'start: "yes" | "no"' });
    const allowed = constraint.allowedAfter([], engine.tokenizer.vocabSize).map((t) => engine.tokenizer.decode([t]));
    expect(allowed.length).toBeGreaterThan(0);
    for (const piece of allowed) expect('yes'.startsWith(piece) || 'no'.startsWith(piece)).toBe(true);
  });

  it('refuses malformed and unsatisfiable grammars with a message naming the problem', async () => {
    await expect(engine.compileGrammar({ type: 'regex', value: '(a' })).rejects.toMatchObject({
      code: 'InvalidArgumentError',
      message: expect.stringContaining('regex'),
    });
    await expect(
      engine.compileGrammar({ type: 'json_schema', value: { type: 'string', minLength: 5, maxLength: 2 } }),
    ).rejects.toMatchObject({
      code: 'InvalidArgumentError',
      message: expect.stringMatching(/unsatisfiable|minLength/i),
    });
    await expect(engine.compileGrammar({ type: 'lark', value: 'start: nothing' })).rejects.toMatchObject({
      message: expect.stringContaining('nothing'),
    });
  });
});

describe('the engine', () => {
  it('generates what the regex matches, and a constrained request changes no other', async () => {
    const free = engine.chat({ messages: [{ role: 'user', content: 'Name a color.' }], maxTokens: 16 });
    const constrained = engine.chat({
      messages: [{ role: 'user', content: 'Name a color.' }],
      maxTokens: 16,
      grammar: { type: 'regex', value: '(red|green|blue)!' },
    });
    const alone = await engine.chat({ messages: [{ role: 'user', content: 'Name a color.' }], maxTokens: 16 }).result;
    expect((await constrained.result).text).toMatch(/^(red|green|blue)!$/);
    expect((await free.result).tokenIds).toEqual(alone.tokenIds);
  }, 60_000);

  it('keeps sampled, constrained outputs the same through preemption (forced groups and the random stream resume alike)', async () => {
    // 8 blocks of 16 tokens: four sequences of ~40 + 60 tokens cannot all fit.
    const small = await Engine.load({ model: path, kvTokens: 128, blockSize: 16 });
    try {
      const schema = {
        type: 'object',
        properties: { name: { type: 'string', maxLength: 12 }, tags: { type: 'array', items: { enum: ['a', 'bb', 'ccc'] }, maxItems: 6 } },
        required: ['name', 'tags'],
        additionalProperties: false,
      };
      const requests = ['A cat.', 'A dog.', 'A bird.', 'A fish.'].map((content, i) => ({
        messages: [{ role: 'user', content }],
        maxTokens: 60,
        temperature: 0.8,
        seed: i,
        grammar: { type: 'json_schema' as const, value: schema },
      }));
      const expected = [];
      for (const r of requests) expected.push((await small.chat(r).result).tokenIds);
      const together = await Promise.all(requests.map((r) => small.chat(r).result));
      expect(small.load.preemptions).toBeGreaterThan(0);
      expect(together.map((r) => r.tokenIds)).toEqual(expected);
    } finally {
      small.close();
    }
  }, 300_000);

  it('returns tool calls read from the output of a chat with tools', async () => {
    const tools: ChatTool[] = [
      {
        type: 'function',
        function: {
          name: 'add',
          description: 'Adds two numbers',
          parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
        },
      },
    ];
    const result = await engine.chat({
      messages: [{ role: 'user', content: 'What is 2 + 3?' }],
      tools,
      toolChoice: 'required',
      maxTokens: 60,
    }).result;
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls![0]!.name).toBe('add');
    const args = JSON.parse(result.toolCalls![0]!.arguments) as Record<string, unknown>;
    expect(typeof args.a).toBe('number');
    expect(typeof args.b).toBe('number');
  }, 60_000);
});

describe('tool-call formats', () => {
  const calls = [
    { name: 'get_weather', arguments: { city: 'Paris', days: [1, 2] } },
    { name: 'get_time', arguments: { zone: 'UTC' } },
  ];
  it.each(['hermes', 'mistral', 'llama3', 'gemma'] as const)('%s reads back the calls it writes', (name) => {
    const template = { hermes: '<tool_call>', mistral: '[TOOL_CALLS]', llama3: '<|python_tag|><|eot_id|>', gemma: 'tool_code' }[name];
    const format = detectToolCallFormat(template);
    expect(format.name).toBe(name);
    const parsed = format.parse(format.write(calls));
    expect(parsed.calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) as unknown }))).toEqual(calls);
  });

  it('reads Gemma-style Python calls and Mistral name[ARGS] calls', () => {
    expect(detectToolCallFormat('tool_code').parse('```tool_code\nget_weather(city="Paris", days=[1, 2], metric=True)\n```').calls).toEqual(
      [{ name: 'get_weather', arguments: JSON.stringify({ city: 'Paris', days: [1, 2], metric: true }) }],
    );
    expect(detectToolCallFormat('[TOOL_CALLS]').parse('[TOOL_CALLS]get_time[ARGS]{"zone": "UTC"}').calls).toEqual([
      { name: 'get_time', arguments: '{"zone":"UTC"}' },
    ]);
  });

  it('leaves text that only looks like a call alone, and drops a call cut off at the end', () => {
    const hermes = detectToolCallFormat('<tool_call>');
    expect(hermes.parse('I would use <tool_call>not json</tool_call> here').calls).toEqual([]);
    expect(hermes.parse('<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "f", "argu').calls).toEqual([
      { name: 'f', arguments: '{}' },
    ]);
  });

  it('streams text until a call may start, then holds it', () => {
    const stream = new ToolCallStream(detectToolCallFormat('<tool_call>'));
    const shown = ['Let me check. ', '<tool', '_call>\n{"name": "f", ', '"arguments": {"x": 1}}\n</tool_call>'].map((t) => stream.push(t));
    expect(shown).toEqual(['Let me check. ', '', '', '']);
    expect(stream.finish()).toEqual({ rest: '', calls: [{ name: 'f', arguments: '{"x":1}' }] });
    const plain = new ToolCallStream(detectToolCallFormat('<tool_call>'));
    expect(plain.push('a <')).toBe('a ');
    expect(plain.push(' b')).toBe('< b');
    expect(plain.finish()).toEqual({ rest: '', calls: [] });
  });

  it('describes tools to templates that cannot render them, and rewrites the history', () => {
    const plan = planToolChat({
      templateSource: "{% for m in messages %}{{ m['content'] }}{% endfor %}",
      messages: [
        { role: 'user', content: 'Weather?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{"city": "Oslo"}' } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'rain' },
      ],
      tools: [{ type: 'function', function: { name: 'w', parameters: { type: 'object' } } }],
      toolChoice: 'required',
    });
    expect(plan.templateTools).toBeUndefined();
    expect(plan.messages[0]).toMatchObject({ role: 'system', content: expect.stringContaining('"name":"w"') });
    expect(plan.messages[2]).toEqual({ role: 'assistant', content: '<tool_call>\n{"name":"w","arguments":{"city":"Oslo"}}\n</tool_call>' });
    expect(plan.messages[3]).toEqual({ role: 'user', content: '<tool_response>\nrain\n</tool_response>' });
    expect(plan.grammar).toMatchObject({ type: 'lark', value: expect.stringContaining('<tool_call>') });
  });
});
