/**
 * GET /openapi.json (openapi/document.ts) and GET /docs (assets/docs.html, which renders it).
 * Both are open when the server has an API key, as /health is and as mistral.rs and vLLM serve
 * theirs: they describe the routes, never a secret. The page loads nothing from elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import type { RequestHandler } from 'express';

import { openApiDocument } from '../openapi/document.js';

// From src/routes or dist/routes alike, the package root is two levels up.
const packageRoot = new URL('../../', import.meta.url);

let cached: { html: string; version: string } | undefined;
function assets(): { html: string; version: string } {
  cached ??= {
    html: readFileSync(new URL('assets/docs.html', packageRoot), 'utf8'),
    version: (JSON.parse(readFileSync(new URL('package.json', packageRoot), 'utf8')) as { version: string }).version,
  };
  return cached;
}

export function openApiRoute(): RequestHandler {
  return (req, res) => {
    // `servers`: the origin the client reached us at, so "try it" tools call this server back.
    const serverUrl = `${req.protocol}://${req.get('host') ?? 'localhost'}`;
    res.set('Cache-Control', 'no-store').json(openApiDocument(serverUrl, assets().version));
  };
}

export function docsRoute(): RequestHandler {
  return (_req, res) => {
    // The page's own inline script and style (by a nonce, new for each request), and fetches
    // to this origin only: nothing from elsewhere can run or load.
    const nonce = randomBytes(16).toString('base64');
    res
      .set({
        'Cache-Control': 'no-store',
        'Content-Security-Policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'`,
      })
      .type('html')
      .send(assets().html.replaceAll('__NONCE__', nonce));
  };
}
