/**
 * The chat page (GET /) in a real headless Chromium over the default model (SmolLM2-135M):
 * type, send, watch the answer stream in, stop a reply, render Markdown, enter an API key.
 * Every expected text comes from our engine for the very request the page sent (read off the
 * wire), never hard-coded. Screenshots go to test-artifacts/web-ui/ at the repository's root.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Engine } from '@mistralrs/core';
import { chromium, type Browser } from 'playwright-core';

import type { CompletionDone, RunningServer } from '../../src/index.js';
import { artifactsDir, needsChromium } from './chromium.js';
import {
  ask,
  lastReplyText,
  openPage,
  type PageWindow,
  renderedText,
  setParameters,
  waitForReply,
  watchAssistantText,
} from './web-ui-page.js';
import { getStats, loadDefaultEngine, MODEL_ID, post, serve, sseData } from './helpers.js';

const API_KEY = 'sk-web-ui-test';
// As in reasoning.test.ts: the default model with Qwen 3's template, its output held by a regex
// (the server's `grammar` field, added to the page's request on its way) to a thinking model's shape.
const QWEN3_TEMPLATE = fileURLToPath(new URL('../fixtures/chat-templates/qwen3.jinja', import.meta.url));
const THINKING = String.raw`<think>\n[a-z]{2,8}( [a-z]{2,8}){1,3}\n</think>\n\n[A-Z][a-z]{2,8}( \*\*[a-z]{2,8}\*\*)?\.`;
const chromiumGate = needsChromium();

let engine: Engine;
let thinkingEngine: Engine;
let server: RunningServer;
let keyedServer: RunningServer;
let thinkingServer: RunningServer;
let browser: Browser;
const completions: CompletionDone[] = [];
const finished = new EventEmitter();
const screenshots = chromiumGate.path ? artifactsDir('web-ui') : '';

chromiumGate.describe('the chat page in headless Chromium', () => {
  beforeAll(async () => {
    engine = await loadDefaultEngine();
    server = await serve(engine, {
      onCompletionDone: (done) => {
        completions.push(done);
        finished.emit('done');
      },
    });
    keyedServer = await serve(engine, { apiKey: API_KEY });
    thinkingEngine = await loadDefaultEngine({ chatTemplate: QWEN3_TEMPLATE });
    thinkingServer = await serve(thinkingEngine);
    // --no-sandbox: the tests may run as root (CI containers), where Chromium's sandbox cannot start.
    browser = await chromium.launch({ executablePath: chromiumGate.path, args: ['--no-sandbox'] });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await keyedServer?.close();
    await thinkingServer?.close();
    engine?.close();
    thinkingEngine?.close();
  });

  it('lists the model, and streams in the answer engine.chat gives greedily, growing as it comes', async () => {
    const { page, requests, problems } = await openPage(browser, server.url);
    expect(await page.locator('#model option').allTextContents()).toContain(MODEL_ID);
    expect(await page.inputValue('#model')).toBe(MODEL_ID);
    await setParameters(page, { temperature: '0', 'max-tokens': '12' });
    await watchAssistantText(page);

    const question = 'What is the capital of France?';
    await ask(page, question);
    expect(await waitForReply(page)).toBe('done');

    const body = requests.at(-1)!;
    expect(body).toMatchObject({ model: MODEL_ID, stream: true, temperature: 0, max_tokens: 12 });
    expect(body.messages).toEqual([{ role: 'user', content: question }]);
    expect(body).not.toHaveProperty('top_p');
    expect(body).not.toHaveProperty('seed');
    const reference = await engine.chat({ messages: body.messages, maxTokens: 12, temperature: 0 }).result;
    expect(reference.text.length).toBeGreaterThan(0);
    // The page keeps what was streamed as the turn's text, and shows it rendered.
    expect(await page.evaluate(() => (window as unknown as PageWindow).mistralrsChat.messages())).toEqual([
      ...body.messages,
      { role: 'assistant', content: reference.text },
    ]);
    const shown = await lastReplyText(page);
    expect(shown).toBe(await renderedText(page, reference.text));
    expect(await page.locator('.message.assistant .meta').last().textContent()).toContain(`${reference.tokenIds.length} tokens`);

    // Streaming, bounded by work: the page applied every content chunk the server sends for this
    // request (counted off a raw stream of the same body), and was seen growing through at least
    // two partial states, each a prefix of the final text, before it.
    const raw = await post(`${server.url}/v1/chat/completions`, body);
    const contentChunks = sseData(raw.text)
      .filter((data) => data !== '[DONE]')
      .filter((data) => (JSON.parse(data) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content);
    expect(contentChunks.length).toBeGreaterThanOrEqual(2);
    expect(await page.locator('.message.assistant').last().getAttribute('data-deltas')).toBe(String(contentChunks.length));
    const states = await page.evaluate(() => (window as unknown as PageWindow).uiStates);
    expect(states.at(-1)).toBe(shown);
    const partial = states.filter((state) => state !== '' && state !== shown);
    expect(partial.length).toBeGreaterThanOrEqual(1);
    for (const state of partial) expect(shown.startsWith(state.trimEnd())).toBe(true);
    expect(new Set(states.filter(Boolean)).size).toBeGreaterThanOrEqual(2);

    await page.screenshot({ path: join(screenshots, 'streamed-answer.png'), fullPage: true });
    expect(await problems()).toEqual([]);
    await page.close();
  }, 120_000);

  it('stops a reply: the request is cancelled on the server long before max_tokens, and the next question works', async () => {
    const { page, requests, problems } = await openPage(browser, server.url);
    const maxTokens = 1000;
    await setParameters(page, { temperature: '0', 'max-tokens': String(maxTokens) });
    await ask(page, 'Write a very long story about a dragon who learns to fly, with many chapters.');
    // Stop as soon as the first piece of the answer is on the page.
    await page.waitForFunction(() => Number([...document.querySelectorAll('.message.assistant')].at(-1)?.getAttribute('data-deltas')) >= 1);
    await page.click('#stop');
    expect(await waitForReply(page)).toBe('stopped');

    const done = await completionOf((await page.locator('.message.assistant').last().getAttribute('data-id'))!);
    expect(done.clientGone).toBe(true);
    expect(done.finishReasons).toEqual(['cancelled']);
    expect(done.usage.completion_tokens).toBeLessThan(maxTokens / 2);
    expect((await getStats(server.url)).running).toBe(0);
    expect(await page.locator('.message.assistant .meta').last().textContent()).toBe('Stopped');
    expect(await page.isVisible('#stop')).toBe(false);
    expect(await page.isEnabled('#send')).toBe(true);
    const stoppedText = await lastReplyText(page);
    expect(stoppedText.length).toBeGreaterThan(0);
    await page.screenshot({ path: join(screenshots, 'stopped.png'), fullPage: true });

    // The stopped reply stays in the conversation, as it was shown, and the page answers again.
    await setParameters(page, { 'max-tokens': '12' });
    await ask(page, 'Now say it in one sentence.');
    expect(await waitForReply(page)).toBe('done');
    const body = requests.at(-1)!;
    expect(body.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(await renderedText(page, body.messages[1]!.content as string)).toBe(stoppedText);
    const reference = await engine.chat({ messages: body.messages, maxTokens: 12, temperature: 0 }).result;
    expect(await lastReplyText(page)).toBe(await renderedText(page, reference.text));
    await page.screenshot({ path: join(screenshots, 'after-stop.png'), fullPage: true });
    expect(await problems()).toEqual([]);
    await page.close();
  }, 180_000);

  it('renders Markdown as elements, and the model’s HTML as text', async () => {
    const { page, problems } = await openPage(browser, server.url);
    const markdown = [
      '# A title',
      'Some **bold**, *emphasis*, ~~struck~~ and `inline <b>code</b>` text.',
      '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">',
      '',
      '- one',
      '- two',
      '  - nested',
      '',
      '3. third',
      '4. fourth',
      '',
      '> quoted',
      '',
      '[safe](https://example.test/a) and [unsafe](javascript:alert(1)) and snake_case_name',
      '',
      '```js',
      "const tag = '<b>';",
      '```',
      '',
      '| a | b |',
      '|---|--:|',
      '| 1 | 2 |',
    ].join('\n');
    const dom = await page.evaluate((text) => {
      const { renderMarkdown } = (window as unknown as PageWindow).mistralrsChat;
      // Shown as an assistant message is, for the screenshot.
      const message = document.createElement('article');
      message.className = 'message assistant';
      const content = document.createElement('div');
      content.className = 'content';
      content.append(renderMarkdown(text));
      message.append(content);
      document.getElementById('conversation')!.append(message);
      const texts = (selector: string) => [...content.querySelectorAll(selector)].map((node) => node.textContent);
      return {
        h1: texts('h1'),
        strong: texts('strong'),
        em: texts('em'),
        del: texts('del'),
        inlineCode: texts('p > code'),
        injected: content.querySelectorAll('script, img, b, [onerror]').length,
        pwned: (window as unknown as { pwned?: number }).pwned,
        text: content.textContent,
        topItems: [...content.querySelectorAll('ul:not(li ul) > li')].map((item) => item.firstChild?.textContent),
        nested: texts('li > ul > li'),
        ordered: { start: content.querySelector('ol')?.getAttribute('start'), items: texts('ol > li') },
        quote: texts('blockquote'),
        links: [...content.querySelectorAll('a')].map((a) => ({
          href: a.getAttribute('href'),
          rel: a.rel,
          target: a.target,
          text: a.textContent,
        })),
        codeLanguage: texts('.code-block .code-language'),
        code: texts('.code-block pre code'),
        codeClass: content.querySelector('.code-block pre code')?.className,
        copyButtons: texts('.code-block button.copy'),
        table: {
          head: texts('th'),
          cells: texts('td'),
          align: (content.querySelector('td:last-child') as HTMLElement | null)?.style.textAlign,
        },
      };
    }, markdown);

    expect(dom.h1).toEqual(['A title']);
    expect(dom.strong).toEqual(['bold']);
    expect(dom.em).toEqual(['emphasis']);
    expect(dom.del).toEqual(['struck']);
    expect(dom.inlineCode).toEqual(['inline <b>code</b>']);
    expect(dom.injected).toBe(0);
    expect(dom.pwned).toBeUndefined();
    expect(dom.text).toContain('<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">');
    expect(dom.topItems).toEqual(['one', 'two']);
    expect(dom.nested).toEqual(['nested']);
    expect(dom.ordered).toEqual({ start: '3', items: ['third', 'fourth'] });
    expect(dom.quote).toEqual(['quoted']);
    expect(dom.links).toEqual([{ href: 'https://example.test/a', rel: 'noopener noreferrer', target: '_blank', text: 'safe' }]);
    expect(dom.text).toContain('[unsafe](javascript:alert(1)) and snake_case_name');
    expect(dom.codeLanguage).toEqual(['js']);
    expect(dom.code).toEqual(["const tag = '<b>';"]);
    expect(dom.codeClass).toBe('language-js');
    expect(dom.copyButtons).toEqual(['Copy']);
    expect(dom.table).toEqual({ head: ['a', 'b'], cells: ['1', '2'], align: 'right' });

    // The copy button puts the code on the clipboard.
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await page.click('.code-block button.copy');
    await page.waitForFunction(() => document.querySelector('.code-block button.copy')?.textContent !== 'Copy');
    expect(await page.textContent('.code-block button.copy')).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("const tag = '<b>';");

    await page.screenshot({ path: join(screenshots, 'markdown.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(screenshots, 'markdown-dark.png'), fullPage: true });
    expect(await problems()).toEqual([]);
    await page.close();
  }, 60_000);

  it('shows a thinking model’s reasoning_content in a collapsible block, apart from the answer', async () => {
    const { page, requests, problems } = await openPage(browser, thinkingServer.url);
    await setParameters(page, { temperature: '0', 'max-tokens': '64' });
    // The grammar that makes SmolLM2 write like a thinking model goes in on the way out.
    await page.route('**/v1/chat/completions', (route) =>
      route.continue({
        postData: JSON.stringify({ ...JSON.parse(route.request().postData()!), grammar: { type: 'regex', value: THINKING } }),
      }),
    );
    await ask(page, 'What is the capital of France?');
    expect(await waitForReply(page)).toBe('done');

    const whole = await post(`${thinkingServer.url}/v1/chat/completions`, {
      ...requests.at(-1)!,
      stream: false,
      stream_options: undefined,
      grammar: { type: 'regex', value: THINKING },
    });
    const { message } = (whole.json as { choices: { message: { content: string; reasoning_content: string } }[] }).choices[0]!;
    expect(message.reasoning_content.length).toBeGreaterThan(0);
    const reasoning = page.locator('.message.assistant .reasoning').last();
    expect(await reasoning.isVisible()).toBe(true);
    expect(await reasoning.locator('summary').textContent()).toBe('Reasoning');
    // Folded once the answer has started (it is open while only the reasoning streams).
    expect(await reasoning.getAttribute('open')).toBeNull();
    expect(await reasoning.locator('.reasoning-body').textContent()).toBe(await renderedText(page, message.reasoning_content));
    expect(await lastReplyText(page)).toBe(await renderedText(page, message.content));
    // Only the answer goes back to the model in the next turn.
    expect((await page.evaluate(() => (window as unknown as PageWindow).mistralrsChat.messages())).at(-1)).toEqual({
      role: 'assistant',
      content: message.content,
    });
    await reasoning.locator('summary').click();
    await page.screenshot({ path: join(screenshots, 'reasoning.png'), fullPage: true });
    expect(await problems()).toEqual([]);
    await page.close();
  }, 120_000);

  it('shows an error event that ends a stream, keeping the text that came before it', async () => {
    const { page, problems } = await openPage(browser, server.url);
    // A stream as the server ends one that fails after its first chunk (sse.ts); its frames are
    // made here, since nothing makes the real model fail on cue.
    const chunk = (delta: object) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', model: MODEL_ID, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
    const error = {
      message: 'the grammar failed during generation',
      type: 'invalid_request_error',
      param: 'grammar',
      code: 'invalid_grammar',
    };
    await page.route('**/v1/chat/completions', (route) =>
      route.fulfill({
        status: 200,
        contentType: 'text/event-stream',
        body: `${chunk({ role: 'assistant', content: '' })}${chunk({ content: 'Partial **answer**' })}data: ${JSON.stringify({ error })}\n\ndata: [DONE]\n\n`,
      }),
    );
    await ask(page, 'Hello?');
    expect(await waitForReply(page)).toBe('error');
    expect(await page.locator('.message.assistant .meta').last().textContent()).toBe(
      'invalid_grammar: the grammar failed during generation',
    );
    expect(await lastReplyText(page)).toBe('Partial answer');
    expect(await page.locator('.message.assistant .content strong').last().textContent()).toBe('answer');
    expect(await page.evaluate(() => (window as unknown as PageWindow).mistralrsChat.messages())).toEqual([
      { role: 'user', content: 'Hello?' },
      { role: 'assistant', content: 'Partial **answer**' },
    ]);
    expect(await page.isEnabled('#send')).toBe(true);
    expect(await problems()).toEqual([]);
    await page.close();
  }, 60_000);

  it('with an API key: the page loads without it, shows the 401, then works once the key is entered', async () => {
    const { page, requests, problems, authorizations } = await openPage(browser, keyedServer.url);
    // The model list needs the key: the page says so, and opens the settings where it goes.
    await page.waitForSelector('#status:not([hidden])');
    expect(await page.textContent('#status')).toMatch(/401 invalid_api_key: no API key provided.*enter the API key in Settings/);
    expect(await page.isVisible('#settings')).toBe(true);

    await setParameters(page, { temperature: '0', 'max-tokens': '8' });
    const question = 'Name a color.';
    await ask(page, question);
    expect(await waitForReply(page)).toBe('error');
    expect(await page.locator('.message.assistant .meta').last().textContent()).toMatch(/^401 invalid_api_key: no API key provided/);
    expect(await page.inputValue('#prompt')).toBe(question); // back in the box, to send again
    expect(await page.evaluate(() => (window as unknown as PageWindow).mistralrsChat.messages())).toEqual([]);
    expect(authorizations.at(-1)).toBeUndefined();
    await page.screenshot({ path: join(screenshots, 'api-key-401.png'), fullPage: true });

    await page.fill('#api-key', API_KEY);
    await page.locator('#api-key').blur(); // `change`: stored, and the models listed again
    await page.waitForSelector('#status', { state: 'hidden' });
    expect(await page.locator('#model option').allTextContents()).toEqual([MODEL_ID]);
    expect(await page.evaluate(() => localStorage.getItem('mistralrs-ui.api-key'))).toBe(API_KEY);

    await page.click('#send');
    expect(await waitForReply(page)).toBe('done');
    expect(authorizations.at(-1)).toBe(`Bearer ${API_KEY}`);
    const body = requests.at(-1)!;
    expect(body.messages).toEqual([{ role: 'user', content: question }]);
    const reference = await engine.chat({ messages: body.messages, maxTokens: 8, temperature: 0 }).result;
    expect(await lastReplyText(page)).toBe(await renderedText(page, reference.text));
    await page.screenshot({ path: join(screenshots, 'api-key-ok.png'), fullPage: true });

    // The key survives a reload (localStorage), so the page lists the models at once.
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]');
    expect(await page.inputValue('#api-key')).toBe(API_KEY);
    expect(await page.locator('#model option').allTextContents()).toEqual([MODEL_ID]);
    expect(await page.isHidden('#status')).toBe(true);
    expect(await problems()).toEqual([]);
    await page.close();
  }, 120_000);
});

/** The server's record of the completion `id` (onCompletionDone), once the request has ended. */
async function completionOf(id: string): Promise<CompletionDone> {
  for (;;) {
    const done = completions.find((c) => c.id === id);
    if (done) return done;
    await new Promise((resolve) => finished.once('done', resolve));
  }
}
