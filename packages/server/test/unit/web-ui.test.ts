/**
 * GET / and its files, without a browser (test/native/web-ui.test.ts drives the page in
 * Chromium): same-origin references only, under a Content-Security-Policy that allows nothing
 * else and no inline script; open while the server has an API key; no HTML parsing of text in
 * the page's scripts.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';

import { createApp, type AppOptions } from '../../src/index.js';
import { WEB_UI_ASSET_PATHS, WEB_UI_PATHS } from '../../src/routes/web-ui.js';
import { closeApp, fakeEngine, listenOnLoopback } from './fake-engine.js';

afterEach(closeApp);

const options = (extra: Partial<AppOptions> = {}): AppOptions =>
  ({ engine: fakeEngine(() => [{ chunk: { text: 'Hi', tokenIds: [1] } }]), modelId: 'fake', ...extra }) as AppOptions;

/** The CSP's directives: name → sources. */
function directives(csp: string): Map<string, string[]> {
  return new Map(
    csp
      .split(';')
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0])
      .map(([name, ...sources]) => [name!, sources]),
  );
}

describe('GET /', () => {
  it('is the chat page, referencing only its own files, under a CSP that allows only this origin and no inline script', async () => {
    const url = await listenOnLoopback(createApp(options()));
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const csp = directives(res.headers.get('content-security-policy') ?? '');
    expect(csp.get('default-src')).toEqual(["'none'"]);
    for (const name of ['script-src', 'style-src', 'connect-src']) expect([name, csp.get(name)]).toEqual([name, ["'self'"]]);
    expect(csp.get('img-src')).toEqual(["'self'", 'data:']);
    expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp.get('base-uri')).toEqual(["'none'"]);
    // Nothing from another origin, nothing inline, nothing evaluated.
    for (const [name, sources] of csp) {
      for (const source of sources) expect([name, source]).toEqual([name, expect.stringMatching(/^('self'|'none'|data:)$/)]);
    }

    const html = await res.text();
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain('<script type="module" src="/ui/app.js"></script>');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toMatch(/<style|\sstyle=|\son\w+=/i); // no inline style or handler
    const references = [...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']*)["']/gi)].map((m) => m[1]!);
    expect(references.sort()).toEqual(['/docs', '/ui/app.css', '/ui/app.js', 'data:,']);
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('serves the script, the renderer and the style with their types, the same headers, and only same-origin imports', async () => {
    const url = await listenOnLoopback(createApp(options()));
    const page = await fetch(`${url}/`);
    expect(WEB_UI_ASSET_PATHS).toEqual(['/ui/app.js', '/ui/markdown.js', '/ui/app.css']);
    for (const path of WEB_UI_ASSET_PATHS) {
      const res = await fetch(`${url}${path}`);
      const body = await res.text();
      expect([path, res.status]).toEqual([path, 200]);
      expect([path, res.headers.get('content-type')]).toEqual([
        path,
        path.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8',
      ]);
      expect([path, res.headers.get('x-content-type-options')]).toEqual([path, 'nosniff']);
      expect([path, res.headers.get('content-security-policy')]).toEqual([path, page.headers.get('content-security-policy')]);
      // No outside address: no script, font or stylesheet from elsewhere.
      expect([path, body.match(/https?:\/\/\S*/g)]).toEqual([path, null]);
      if (path.endsWith('.js')) {
        const imports = [...body.matchAll(/^import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1]);
        for (const specifier of imports) expect([path, specifier]).toEqual([path, expect.stringMatching(/^\.\/[\w-]+\.js$/)]);
        // Model output reaches the page as DOM nodes or text, never through an HTML parser.
        expect([
          path,
          body.match(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment|eval\(/g),
        ]).toEqual([path, null]);
      }
    }
  });

  it('is open while the server has an API key; the API is not', async () => {
    const url = await listenOnLoopback(createApp(options({ apiKey: 'sk-ui' })));
    for (const path of WEB_UI_PATHS) expect([path, (await fetch(`${url}${path}`)).status]).toEqual([path, 200]);
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer sk-ui' } })).status).toBe(200);
    // Only GET (and HEAD) are open: another method still needs the key.
    expect((await fetch(`${url}/`, { method: 'POST' })).status).toBe(401);
  });

  it('answers HEAD, refuses other methods with a 405, and knows no other file', async () => {
    const url = await listenOnLoopback(createApp(options()));
    expect((await fetch(`${url}/`, { method: 'HEAD' })).status).toBe(200);
    const post = await fetch(`${url}/`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
    expect((await fetch(`${url}/ui/app.js`, { method: 'DELETE' })).status).toBe(405);
    const unknown = await fetch(`${url}/ui/other.js`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('is in the published package: the files are under assets/, which package.json does not leave out', () => {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { files?: string[] };
    if (manifest.files) expect(manifest.files).toContain('assets');
    for (const file of ['index.html', 'app.js', 'markdown.js', 'app.css'])
      expect(readFileSync(new URL(`../../assets/ui/${file}`, import.meta.url), 'utf8').length).toBeGreaterThan(100);
  });
});
