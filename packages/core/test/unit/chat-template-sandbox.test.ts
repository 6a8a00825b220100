// Templates are untrusted model data: these check that bad ones fail with a ChatTemplateError
// naming their source, that hostile ones are stopped within the limits without harming the
// process, and that nothing outside the template's own data can be reached.
import { afterAll, describe, expect, it } from '@jest/globals';

import {
  ChatTemplate,
  ChatTemplateError,
  RenderSandbox,
  type ChatTemplateErrorKind,
  type JsonValue,
} from '../../src/chat-template/index.js';

const TIMEOUT_MS = 500;
// A watchdog kill comes 250 ms after the timeout; the rest is slack for a loaded machine.
const STOPPED_WITHIN_MS = TIMEOUT_MS + 2500;

const sandbox = new RenderSandbox({ limits: { timeoutMs: TIMEOUT_MS } });
const sandboxes = [sandbox];
afterAll(() => Promise.all(sandboxes.map((s) => s.close())));

/** 10^10 empty iterations: nothing but time. */
const BUSY_LOOP = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}';

const template = (text: string, source = 'evil.jinja', box = sandbox) => ChatTemplate.fromString(text, { source, sandbox: box });
const hello = [{ role: 'user', content: 'Hello' }];

/** The ChatTemplateError a render fails with (anything else fails the test). */
async function rejection(render: Promise<string>): Promise<ChatTemplateError> {
  const error = await render.then(
    (output) => new Error(`rendered instead of failing: ${JSON.stringify(output.slice(0, 200))}`),
    (e: unknown) => e,
  );
  if (!(error instanceof ChatTemplateError)) throw error;
  return error;
}

const renderError = (text: string, box = sandbox) => rejection(template(text, 'evil.jinja', box).render({ messages: hello }));

/** The sandbox still renders after whatever came before. */
async function expectHealthy(box = sandbox): Promise<void> {
  expect(await template('{{ messages[0].content }}!', 'ok.jinja', box).render({ messages: hello })).toBe('Hello!');
}

async function expectStopped(text: string, kind: ChatTemplateErrorKind, box = sandbox): Promise<ChatTemplateError> {
  const started = performance.now();
  const error = await renderError(text, box);
  expect(performance.now() - started).toBeLessThan(STOPPED_WITHIN_MS);
  expect(error.kind).toBe(kind);
  expect(error.source).toBe('evil.jinja');
  expect(error.isClientError).toBe(false);
  await expectHealthy(box);
  return error;
}

describe('bad templates', () => {
  it('a syntax error names the source', async () => {
    const error = await renderError('{% for message in messages %}{{ message.content }}');
    expect(error.kind).toBe('invalid_template');
    expect(error.message).toMatch(/^chat template from evil\.jinja: syntax error: /);
  });

  it('a syntax error in a GGUF template names the file and the key', async () => {
    const gguf = { path: '/models/model.gguf', metadata: [{ key: 'tokenizer.chat_template', value: '{{ a + }}' }] };
    const error = await rejection(ChatTemplate.fromGgufMetadata(gguf, { sandbox }).render({ messages: [] }));
    expect(error.kind).toBe('invalid_template');
    expect(error.message).toMatch(/^chat template from model\.gguf \(tokenizer\.chat_template\): syntax error: /);
  });

  it('validate() finds syntax errors and hostile templates at load time', async () => {
    await expect(template('{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}').validate()).resolves.toBeUndefined();
    // A template may refuse the probe conversation: that is not a broken template.
    await expect(template("{{ raise_exception('need a system message') }}").validate()).resolves.toBeUndefined();
    await expect(template('{% if %}').validate()).rejects.toMatchObject({ kind: 'invalid_template' });
    await expect(template(BUSY_LOOP).validate()).rejects.toMatchObject({ kind: 'timeout' });
  });

  it('include, import and extends do not exist: no file can be read', async () => {
    for (const text of ["{% include '/etc/passwd' %}", "{% import 'os' as os %}", "{% extends 'base.html' %}", "{% from 'x' import y %}"]) {
      expect((await renderError(text)).kind).toBe('invalid_template');
    }
  });

  it('raise_exception(msg) rejects with the template message, as a client error', async () => {
    const error = await renderError("{% if messages | length < 2 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}");
    expect(error.kind).toBe('raise_exception');
    expect(error.detail).toBe('Conversation roles must alternate');
    expect(error.message).toBe('chat template from evil.jinja: raise_exception: Conversation roles must alternate');
    expect(error.isClientError).toBe(true);
    expect(error.code).toBe('ChatTemplateError');
  });

  it('a runtime error is a render_error with the interpreter message', async () => {
    const error = await renderError('{{ messages[0].content - 1 }}');
    expect(error.kind).toBe('render_error');
    expect(error.detail).toBe('Unknown operator "-" between StringValue and IntegerValue');
  });

  it('a template over 1 MiB is refused before anything parses it', () => {
    expect(() => ChatTemplate.fromString('x'.repeat(1024 * 1024 + 1), { sandbox })).toThrow(ChatTemplateError);
  });
});

describe('probes reach nothing', () => {
  // Each renders to nothing between the brackets, or fails as a render error.
  const PROBES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    '{{ cycler.__init__.__globals__ }}',
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    '{{ self }}',
    '{{ self.__init__.__globals__ }}',
    '{{ config }}',
    '{{ config.items() }}',
    '{{ request }}',
    '{{ request.application.__globals__ }}',
    '{{ url_for.__globals__ }}',
    '{{ get_flashed_messages }}',
    '{{ joiner }}',
    '{{ namespace.__init__ }}',
    '{{ raise_exception.__globals__ }}',
    '{{ raise_exception.__code__ }}',
    '{{ strftime_now.__closure__ }}',
    '{{ range.constructor }}',
    '{{ messages.constructor }}',
    "{{ messages.constructor.constructor('return process')() }}",
    "{{ ''.constructor.constructor('return process')().env }}",
    "{{ messages[0]['__proto__'] }}",
    '{{ messages[0].__proto__.constructor }}',
    "{{ messages | attr('constructor') }}",
    '{{ process }}',
    '{{ process.env }}',
    '{{ require }}',
    "{{ require('child_process') }}",
    '{{ globalThis }}',
    '{{ this }}',
    '{{ global }}',
    '{{ module }}',
    '{{ import }}',
  ];

  it.each(PROBES)('%s', async (probe) => {
    const outcome = await template(`[${probe}]`, 'probe.jinja')
      .render({ messages: hello })
      .catch((e: unknown) => e);
    if (typeof outcome === 'string') {
      expect(outcome).toBe('[]');
    } else {
      expect(outcome).toBeInstanceOf(ChatTemplateError);
      expect(['render_error', 'invalid_template']).toContain((outcome as ChatTemplateError).kind);
    }
  });

  it('the worker sees no environment variables even if a probe could look', async () => {
    // Defence in depth: the worker process is started with an empty environment.
    process.env.CHAT_TEMPLATE_TEST_SECRET = 'do-not-leak';
    try {
      const output = await template('{{ env }}{{ environ }}{{ os }}{{ CHAT_TEMPLATE_TEST_SECRET }}').render({ messages: hello });
      expect(output).toBe('');
    } finally {
      delete process.env.CHAT_TEMPLATE_TEST_SECRET;
    }
  });
});

describe('hostile templates are stopped and the next render works', () => {
  it('range(100000000) is refused before it allocates', async () => {
    const started = performance.now();
    const error = await expectStopped('{% for i in range(100000000) %}x{% endfor %}', 'too_large');
    expect(error.detail).toMatch(/range\(\) of 100000000 items/);
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 1500);
  });

  it('nested loops run into the time limit', async () => {
    const error = await expectStopped('{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}', 'timeout');
    expect(error.detail).toMatch(/longer than 500 ms/);
  });

  it('a busy loop without output runs into the time limit', async () => {
    await expectStopped(BUSY_LOOP, 'timeout');
  });

  it('the worker stops a runaway loop itself, without the watchdog', async () => {
    // With the kill this far off, only the worker's own clock checks can stop it in time.
    const patient = new RenderSandbox({ limits: { timeoutMs: 300 }, killGraceMs: 60_000 });
    sandboxes.push(patient);
    for (const body of ['', '{{ j }}']) {
      const text = `{% for i in range(100000) %}{% for j in range(100000) %}${body}{% endfor %}{% endfor %}`;
      const error = await expectStopped(text, 'timeout', patient);
      expect(error.detail).toBe('rendering took longer than 300 ms');
    }
  });

  it('a string doubled in a loop is stopped at the size limit', async () => {
    const error = await expectStopped(
      "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
      'too_large',
    );
    expect(error.detail).toMatch(/string of \d+ characters/);
  });

  it('a list doubled in a loop is stopped at the size limit', async () => {
    const text = '{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}';
    await expectStopped(text, 'too_large');
  });

  it('output past the limit is refused', async () => {
    const small = new RenderSandbox({ limits: { timeoutMs: TIMEOUT_MS, maxOutputChars: 1000 } });
    sandboxes.push(small);
    await expectStopped('{% for i in range(200) %}0123456789{% endfor %}', 'too_large', small);
    const echo = template('{{ messages[0].content }}', 'evil.jinja', small);
    const error = await rejection(echo.render({ messages: [{ role: 'user', content: 'x'.repeat(2000) }] }));
    expect(error.kind).toBe('too_large');
  });

  it('unbounded recursion is stopped by the stack limit', async () => {
    // A macro cannot see its own name here, but it can be handed itself.
    const error = await expectStopped('{% macro f(g, n) %}{{ g(g, n + 1) }}{% endmacro %}{{ f(f, 0) }}', 'render_error');
    expect(error.detail).toMatch(/recursion too deep/);
  });

  it('nesting too deep for the parser is a syntax error', async () => {
    const error = await expectStopped(`{{ ${'('.repeat(100_000)}1${')'.repeat(100_000)} }}`, 'invalid_template');
    expect(error.detail).toMatch(/call stack/);
  });

  it('quadratic work inside one native call (the lexer on 200k spaces) is killed by the watchdog', async () => {
    const error = await expectStopped(`${' '.repeat(200_000)}x`, 'timeout');
    expect(error.detail).toMatch(/worker was stopped/);
  });

  it('running out of memory kills the worker, not the process', async () => {
    const tiny = new RenderSandbox({ limits: { timeoutMs: 5000 }, maxHeapMb: 16 });
    sandboxes.push(tiny);
    // upper() flattens a 1M-character rope into a fresh string each time: 1 MB per step, kept.
    const text =
      "{% set ns = namespace(s='x', l=[]) %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}" +
      '{% for i in range(2000) %}{% set ns.l = ns.l + [(ns.s ~ i) | upper] %}{% endfor %}{{ ns.l | length }}';
    const error = await renderError(text, tiny);
    expect(error.kind).toBe('out_of_memory');
    expect(error.detail).toMatch(/limit 16 MiB/);
    await expectHealthy(tiny);
  });

  // One filter call allocating hundreds of MB in one native step: V8 aborts the process that
  // runs it (a worker thread's resourceLimits would not save the server), so it must be the
  // worker process.
  it.each([
    ['tojson with a huge indent', '{{ messages | tojson(indent=100000000) }}'],
    [
      'join with a huge separator',
      "{% set ns = namespace(s='x') %}{% for i in range(21) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ range(200) | join(ns.s) }}",
    ],
  ])('%s kills the worker, not the process', async (_name, text) => {
    // Time enough that memory, not the clock, is what stops it.
    const roomy = new RenderSandbox({ limits: { timeoutMs: 10_000 } });
    sandboxes.push(roomy);
    const error = await renderError(text, roomy);
    expect(['out_of_memory', 'too_large']).toContain(error.kind);
    await expectHealthy(roomy);
  });

  it('renders queued behind a hostile one still complete', async () => {
    const hostile = template(BUSY_LOOP).render({ messages: hello });
    const normal = template('{{ messages[0].content }} {{ n }}', 'ok.jinja');
    const others = Array.from({ length: 5 }, (_, n) => normal.render({ messages: hello, extra: { n } }));
    await expect(hostile).rejects.toMatchObject({ kind: 'timeout' });
    expect(await Promise.all(others)).toEqual(['Hello 0', 'Hello 1', 'Hello 2', 'Hello 3', 'Hello 4']);
  });
});

describe('a pool of workers', () => {
  it('has two workers at least, so one slow render cannot hold up the rest', () => {
    expect(new RenderSandbox().maxWorkers).toBeGreaterThanOrEqual(2);
  });

  it('a slow render holds only its own worker: a normal one completes while it still runs', async () => {
    // The slow render could run for a minute; the normal one needs a few template steps.
    const box = new RenderSandbox({ workers: 2, limits: { timeoutMs: 60_000 } });
    sandboxes.push(box);
    let slowSettled = false;
    const slow = rejection(template(BUSY_LOOP, 'evil.jinja', box).render({ messages: hello })).finally(() => (slowSettled = true));
    const normal = await template('{{ messages[0].content }}!', 'ok.jinja', box).render({ messages: hello });
    expect(normal).toBe('Hello!');
    expect(slowSettled).toBe(false);
    await box.close();
    expect((await slow).detail).toBe('the render sandbox was closed');
  });

  it('more slow renders than workers each time out on their own clock, and the pool recovers', async () => {
    const box = new RenderSandbox({ workers: 2, limits: { timeoutMs: TIMEOUT_MS } });
    sandboxes.push(box);
    const slow = Array.from({ length: 5 }, () => rejection(template(BUSY_LOOP, 'evil.jinja', box).render({ messages: hello })));
    for (const error of await Promise.all(slow)) {
      expect(error.kind).toBe('timeout');
      // Each was timed from when a worker took it, not from when it was queued.
      expect(error.detail).toMatch(new RegExp(`^rendering took longer than ${TIMEOUT_MS} ms`));
    }
    await expectHealthy(box);
  });
});

describe('the sandbox', () => {
  it('multiplexes concurrent renders', async () => {
    const t = template('{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ n }}', 'ok.jinja');
    const outputs = await Promise.all(
      Array.from({ length: 50 }, (_, n) => t.render({ messages: [{ role: 'user', content: `q${n}` }], extra: { n } })),
    );
    expect(outputs).toEqual(Array.from({ length: 50 }, (_, n) => `user=q${n};${n}`));
  });

  it('input that cannot be copied into the worker is an invalid_input error', async () => {
    const extra = { callback: (() => 1) as unknown as JsonValue };
    await expect(template('{{ 1 }}').render({ messages: hello, extra })).rejects.toMatchObject({ kind: 'invalid_input' });
    await expectHealthy();
  });

  it('messages must be an array', async () => {
    const messages = 'hello' as unknown as [];
    await expect(template('{{ 1 }}').render({ messages })).rejects.toMatchObject({ kind: 'invalid_input' });
  });

  it('close() rejects the renders not done, and a later render starts a new worker', async () => {
    const box = new RenderSandbox({ workers: 1 });
    sandboxes.push(box);
    const pending = template(BUSY_LOOP, 'evil.jinja', box).render({ messages: hello });
    const queued = template('{{ 1 }}', 'evil.jinja', box).render({ messages: hello });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await box.close();
    await expect(pending).rejects.toMatchObject({ kind: 'render_error', detail: 'the render sandbox was closed' });
    await expect(queued).rejects.toMatchObject({ kind: 'render_error' });
    await expectHealthy(box);
  });

  it('refuses nonsensical limits', () => {
    expect(() => new RenderSandbox({ workers: 0 })).toThrow(RangeError);
    expect(() => new RenderSandbox({ workers: 1.5 })).toThrow(RangeError);
    expect(() => new RenderSandbox({ limits: { timeoutMs: -1 } })).toThrow(RangeError);
    expect(() => new RenderSandbox({ limits: { maxOutputChars: Number.NaN } })).toThrow(RangeError);
  });
});
