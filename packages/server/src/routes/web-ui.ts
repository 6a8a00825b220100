/**
 * GET /: the chat page (assets/ui/), and its script, renderer and style under /ui/. Open without
 * the API key, as /docs is: the files hold no secret, and every API call the page makes sends
 * the key the user typed into it. Nothing loads from elsewhere (no CDN, no fonts), and the
 * Content-Security-Policy says so to the browser: scripts, styles and fetches from this origin
 * only, no inline script, no framing.
 */
import { readFileSync } from 'node:fs';

import type { RequestHandler } from 'express';

// From src/routes or dist/routes alike, the package root is two levels up.
const uiDir = new URL('../../assets/ui/', import.meta.url);

/** URL path → the file under assets/ui/ and its media type. */
const FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/markdown.js': { file: 'markdown.js', type: 'text/javascript; charset=utf-8' },
  '/ui/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/** The page's paths (open without the API key: auth.ts). */
export const WEB_UI_PATHS: readonly string[] = Object.keys(FILES);

/** Its static files besides the page itself (not API routes, so the OpenAPI document leaves them out). */
export const WEB_UI_ASSET_PATHS: readonly string[] = WEB_UI_PATHS.filter((path) => path !== '/');

/** `default-src 'none'`: whatever is not named here (frames, workers, fonts, objects) is refused. */
export const WEB_UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  // The empty favicon (`data:,`), so the browser asks for no /favicon.ico.
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const cache = new Map<string, string>();

/** The handler of each of `WEB_UI_PATHS`. */
export function webUiRoute(path: string): RequestHandler {
  const entry = FILES[path];
  if (!entry) throw new Error(`no web UI file is served at ${path}`);
  return (_req, res) => {
    let body = cache.get(entry.file);
    if (body === undefined) {
      body = readFileSync(new URL(entry.file, uiDir), 'utf8');
      cache.set(entry.file, body);
    }
    res
      .set({
        'Content-Type': entry.type,
        // Revalidated on each load, so an upgraded server never runs an old script against a new API.
        'Cache-Control': 'no-cache',
        'Content-Security-Policy': WEB_UI_CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
      })
      .send(body);
  };
}
