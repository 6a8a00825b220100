/**
 * The chat page as web-ui.test.ts drives it through playwright-core: a fresh page that records
 * what it sends, the settings panel, the composer, and the page's own renderer.
 */
import { expect } from '@jest/globals';

import type { ChatMessage } from '@mistralrs/core';
import type { Browser, Page } from 'playwright-core';

/** What the page sent to POST /v1/chat/completions. */
export interface ChatBody {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  temperature?: number;
  max_tokens?: number;
  [field: string]: unknown;
}

/** The page's own view of itself (app.js puts it on `window` for tests and the console). */
export interface PageHooks {
  mistralrsChat: { renderMarkdown(text: string): DocumentFragment; messages(): ChatMessage[] };
  uiStates: string[];
  cspViolations: string[];
}
export type PageWindow = Window & PageHooks;

/**
 * A new page (its own context: fresh localStorage) at `url`, loaded: the chat requests it sends
 * and their Authorization headers, and `problems()`: its uncaught errors and CSP violations.
 */
export async function openPage(
  browser: Browser,
  url: string,
): Promise<{
  page: Page;
  requests: ChatBody[];
  authorizations: (string | undefined)[];
  problems: () => Promise<string[]>;
}> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  // No clock of Playwright's: waits end when the work does, bounded only by jest's timeout.
  page.setDefaultTimeout(0);
  page.on('close', () => void context.close());
  const requests: ChatBody[] = [];
  const authorizations: (string | undefined)[] = [];
  const uncaught: string[] = [];
  page.on('pageerror', (error) => uncaught.push(`uncaught: ${error.message}`));
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/v1/chat/completions') {
      requests.push(JSON.parse(request.postData() ?? 'null') as ChatBody);
      authorizations.push(request.headers().authorization);
    }
  });
  await page.addInitScript(() => {
    const hooks = window as unknown as PageWindow;
    hooks.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) =>
      hooks.cspViolations.push(`CSP: ${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  const response = await page.goto(`${url}/`);
  expect(response?.status()).toBe(200);
  await page.waitForSelector('body[data-ready="true"]');
  const problems = async () => [...uncaught, ...(await page.evaluate(() => (window as unknown as PageWindow).cspViolations))];
  return { page, requests, authorizations, problems };
}

export async function setParameters(page: Page, values: Record<string, string>): Promise<void> {
  if (await page.isHidden('#settings')) await page.click('#settings-toggle');
  for (const [id, value] of Object.entries(values)) await page.fill(`#${id}`, value);
}

export async function ask(page: Page, text: string): Promise<void> {
  await page.fill('#prompt', text);
  await page.click('#send');
}

/** Waits for the last reply to end; its state: `done`, `stopped` or `error`. */
export async function waitForReply(page: Page): Promise<string> {
  const handle = await page.waitForFunction(() => {
    const state = [...document.querySelectorAll('.message.assistant')].at(-1)?.getAttribute('data-state');
    return state && state !== 'streaming' ? state : null;
  });
  return (await handle.jsonValue()) ?? '';
}

export async function lastReplyText(page: Page): Promise<string> {
  return (await page.locator('.message.assistant .content').last().textContent()) ?? '';
}

/** The text the page shows for `markdown`: its own renderer's output. */
export async function renderedText(page: Page, markdown: string): Promise<string> {
  return page.evaluate((text) => {
    const box = document.createElement('div');
    box.append((window as unknown as PageWindow).mistralrsChat.renderMarkdown(text));
    return box.textContent ?? '';
  }, markdown);
}

/** Records each distinct text of the last reply as the page renders it (read in `uiStates`). */
export async function watchAssistantText(page: Page): Promise<void> {
  await page.evaluate(() => {
    const hooks = window as unknown as PageWindow;
    hooks.uiStates = [];
    const conversation = document.getElementById('conversation')!;
    new MutationObserver(() => {
      const text = [...conversation.querySelectorAll('.message.assistant .content')].at(-1)?.textContent ?? '';
      if (hooks.uiStates.at(-1) !== text) hooks.uiStates.push(text);
    }).observe(conversation, { subtree: true, childList: true, characterData: true });
  });
}
