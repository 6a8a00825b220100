/**
 * GET /openapi.json and GET /docs: the document is valid OpenAPI 3.1 (checked by a real
 * validator), describes every route the express app registers (walked from its router, so a
 * new route without documentation fails here) and nothing the app does not answer; its example
 * bodies are accepted by their routes; the page loads nothing from another origin.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { validate } from '@readme/openapi-parser';
import Ajv2020 from 'ajv/dist/2020.js';
import type { Express } from 'express';

import { createApp, ModelPool, type AppOptions, type PoolEngine } from '../../src/index.js';
import { EXAMPLES } from '../../src/openapi/document.js';
import { WEB_UI_ASSET_PATHS } from '../../src/routes/web-ui.js';
import type { OpenApiDocument, Operation } from '../../src/openapi/schema.js';
import { closeApp, fakeEmbedder, fakeEngine, listenOnLoopback, type Step } from './fake-engine.js';

afterEach(closeApp);

const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [...text].map((c) => c.charCodeAt(0)) } });
const options = (extra: Partial<AppOptions> = {}): AppOptions =>
  ({ engine: fakeEngine(() => [chunk('Hello')]), modelId: 'fake', allowModelManagement: true, ...extra }) as AppOptions;

/** The fake's tokenizer, with the `decode` /detokenize calls (one character per token id). */
function withDecode<T extends { tokenizer: object }>(engine: T): T {
  Object.assign(engine.tokenizer, { decode: (ids: number[]) => String.fromCharCode(...ids) });
  return engine;
}

async function fetchDocument(url: string): Promise<OpenApiDocument> {
  const res = await fetch(`${url}/openapi.json`);
  expect(res.status).toBe(200);
  return (await res.json()) as OpenApiDocument;
}

interface RouterLayer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
}

/** `METHOD /path` of every route the app registered, with express's `:id` and `*model` as `{id}` and `{model}`. */
function registeredRoutes(app: Express): string[] {
  const stack = (app as unknown as { router: { stack: RouterLayer[] } }).router.stack;
  const routes: string[] = [];
  for (const layer of stack) {
    if (!layer.route) continue;
    const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
    for (const path of paths) {
      const templated = path.replace(/[:*](\w+)/g, '{$1}');
      for (const [method, on] of Object.entries(layer.route.methods))
        if (on && method !== '_all') routes.push(`${method.toUpperCase()} ${templated}`);
    }
  }
  return routes.sort();
}

function documentedRoutes(doc: OpenApiDocument): string[] {
  return Object.entries(doc.paths)
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
    .sort();
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document with servers from the request host', async () => {
    const url = await listenOnLoopback(createApp(options()));
    const doc = await fetchDocument(url);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers).toEqual([{ url }]);
    const result = await validate(structuredClone(doc) as unknown as Parameters<typeof validate>[0]);
    if (!result.valid) throw new Error(`invalid OpenAPI document: ${JSON.stringify(result.errors, null, 2)}`);
    expect(result.specification).toBe('OpenAPI');
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.schemas.Error).toMatchObject({ required: ['error'] });
  });

  it('has schemas that compile as JSON Schema 2020-12, and examples that match their schema', async () => {
    // The OpenAPI meta-schema leaves schema objects unchecked; ajv compiles each one strictly.
    const url = await listenOnLoopback(createApp(options()));
    const doc = await fetchDocument(url);
    const ajv = new Ajv2020({ strict: true, allErrors: true });
    const id = 'urn:mistralrs:openapi';
    const defs = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('#/components/schemas/', `${id}#/$defs/`));
    ajv.addSchema({ $id: id, $defs: defs });
    const byName = (ref: string) => ajv.getSchema(ref.replace('#/components/schemas/', `${id}#/$defs/`))!;
    for (const name of Object.keys(doc.components.schemas)) expect(typeof byName(`#/components/schemas/${name}`)).toBe('function');
    let examples = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      const media = item.post?.requestBody?.content['application/json'];
      if (media?.example === undefined || media.schema.$ref === undefined) continue;
      const check = byName(media.schema.$ref);
      expect({ path, valid: check(media.example), errors: check.errors ?? null }).toEqual({ path, valid: true, errors: null });
      examples++;
    }
    expect(examples).toBeGreaterThan(5);
  });

  it('documents every route the app registers, and only those', async () => {
    const app = createApp(options());
    const url = await listenOnLoopback(app);
    const doc = await fetchDocument(url);
    expect(registeredRoutes(app).length).toBeGreaterThan(15);
    // The chat page's script, renderer and style are files of the page (`/` is listed), not API routes.
    const apiRoutes = registeredRoutes(app).filter((route) => !WEB_UI_ASSET_PATHS.includes(route.replace(/^GET /, '')));
    expect(apiRoutes.length).toBe(registeredRoutes(app).length - WEB_UI_ASSET_PATHS.length);
    expect(documentedRoutes(doc)).toEqual(apiRoutes);
  });

  it('every documented path answers something other than 404 "Invalid URL"', async () => {
    const url = await listenOnLoopback(createApp(options()));
    const doc = await fetchDocument(url);
    for (const route of documentedRoutes(doc)) {
      const [method, template] = route.split(' ') as [string, string];
      const path = template.replace('{model}', 'fake').replace('{id}', 'resp_unknown');
      const res = await fetch(`${url}${path}`, {
        method,
        ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}),
      });
      const text = await res.text();
      // A response id that was never stored is a 404 of its own (`response_not_found`), not an unknown path.
      if (res.status === 404) expect({ route, text }).toEqual({ route, text: expect.not.stringMatching(/Invalid URL|"code":"not_found"/) });
      expect([route, res.status === 405]).toEqual([route, false]);
    }
  });

  it('accepts each documented example body on its route', async () => {
    // A pool, so that the model-management examples can load and unload its model.
    // And an embedding model, which /v1/embeddings's example is sent to.
    const models = new ModelPool<null>({
      models: [
        { id: 'fake', settings: null },
        { id: 'embedder', settings: null },
      ],
      load: async (_, id) =>
        id === 'embedder'
          ? fakeEmbedder()
          : (Object.assign(withDecode(fakeEngine(() => [chunk('Hello')])), { close: () => {} }) as PoolEngine),
      footprintBytes: () => 0,
    });
    await models.load('fake');
    await models.load('embedder');
    const url = await listenOnLoopback(createApp({ models, allowModelManagement: true }));
    const doc = await fetchDocument(url);
    let checked = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      const op: Operation | undefined = item.post;
      const example = op?.requestBody?.content['application/json']?.example;
      if (example === undefined) continue;
      const res = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(path === '/v1/embeddings' ? { ...example, model: 'embedder' } : example),
      });
      const text = await res.text();
      expect({ path, status: res.status, text }).toEqual({ path, status: 200, text: expect.any(String) });
      checked++;
    }
    expect(checked).toBe(Object.keys(EXAMPLES).length + 3); // ModelActionRequest serves status, load, unload and reload
  });

  it('is open, as /health is, when the server has an API key; other routes are not', async () => {
    const url = await listenOnLoopback(createApp(options({ apiKey: 'sk-docs' })));
    expect((await fetch(`${url}/openapi.json`)).status).toBe(200);
    expect((await fetch(`${url}/docs`)).status).toBe(200);
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    const post = await fetch(`${url}/openapi.json`, { method: 'POST' });
    expect(post.status).toBe(401);
  });
});

describe('GET /docs', () => {
  it('is HTML that references only same-origin resources, under a CSP that allows nothing else', async () => {
    const url = await listenOnLoopback(createApp(options()));
    const res = await fetch(`${url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const html = await res.text();
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain("fetch('/openapi.json')");
    // Every src, href, url() and import names a path on this origin (or a fragment).
    const references = [...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']*)["']|url\(([^)]*)\)|@import\s+["']([^"']+)/gi)].map(
      (m) => m[1] ?? m[2] ?? m[3] ?? '',
    );
    expect(references.length).toBeGreaterThan(0);
    for (const reference of references) expect(reference).toMatch(/^(\/(?!\/)|#)/);
    expect(html).not.toMatch(/https?:\/\//);
    // The nonce is new for each request, and the page's script and style carry it.
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeDefined();
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).not.toContain('__NONCE__');
  });
});
