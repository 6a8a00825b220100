/** Shared by the server's native tests: the default model, a server on a loopback port, raw requests. */
import { DEFAULT_MODEL_ID, Engine, fetchRegistryModel, type EngineOptions } from '@mistralrs/core';

import { startServer, type RunningServer, type ServeOptions, type StatsBody } from '../../src/index.js';

export const MODEL_ID = 'smollm2-test';

/** The default model (fetched into the cache on first use), with the engine's defaults unless `options` say otherwise. */
export async function loadDefaultEngine(options: Omit<EngineOptions, 'model'> = {}): Promise<Engine> {
  const path = await fetchRegistryModel(DEFAULT_MODEL_ID);
  return Engine.load({ ...options, model: path });
}

export function serve(engine: Engine, options: Partial<ServeOptions> = {}): Promise<RunningServer> {
  return startServer({ engine, modelId: MODEL_ID, port: 0, onInternalError: () => undefined, ...options });
}

/** GET /v1/stats. */
export async function getStats(serverUrl: string, headers: Record<string, string> = {}): Promise<StatsBody> {
  const response = await fetch(`${serverUrl}/v1/stats`, { headers });
  if (response.status !== 200) throw new Error(`GET /v1/stats: ${response.status} ${await response.text()}`);
  return (await response.json()) as StatsBody;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** POST with a body sent as is (a string) or as JSON, and the answer read whole. */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<RawResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** The `data:` payloads of a server-sent event stream, in order. */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((event) => event.length > 0)
    .map((event) => {
      if (!event.startsWith('data: ')) throw new Error(`not an SSE data event: ${JSON.stringify(event)}`);
      return event.slice('data: '.length);
    });
}
