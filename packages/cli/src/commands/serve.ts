/** `--port N`: serve the OpenAI-compatible API until SIGINT or SIGTERM. */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';

import { DEFAULT_MODEL_ID, type Engine } from '@mistralrs/core';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HOST, isLoopbackHost, startServer, type AppModels, type RunningServer } from '@mistralrs/server';

export interface ServeCliOptions {
  port: number;
  host?: string;
  apiKey?: string;
  corsOrigins?: string[];
  maxBodyBytes?: number;
  /** How long requests in flight may finish after SIGINT or SIGTERM (default 10 s). */
  drainTimeoutMs?: number;
}

/**
 * The id the server answers to: a registry or hub id as given; for a file or folder its base
 * name without `.gguf` (never an absolute path: ids are shown to every client).
 */
export function servedModelId(model: string | undefined, file: string | undefined): string {
  if (model === undefined) return DEFAULT_MODEL_ID;
  if (!existsSync(model)) return model;
  return basename(file ?? model).replace(/\.gguf$/i, '');
}

/**
 * Serves until SIGINT or SIGTERM, then drains (new requests get 503; those in flight get the
 * drain time, then end with an error) and returns 0. A second signal exits at once with 1.
 */
export function serveCommand(engine: Engine, modelId: string, o: ServeCliOptions): Promise<number> {
  return serveUntilSignal({ engine, modelId }, modelId, o);
}

/** As `serveCommand`, for one engine or a pool of models; `label` ends the `listening on` line. */
export async function serveUntilSignal(models: AppModels, label: string, o: ServeCliOptions): Promise<number> {
  const host = o.host ?? DEFAULT_HOST;
  const drainTimeoutMs = o.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  let server: RunningServer;
  try {
    server = await startServer({
      ...models,
      port: o.port,
      host,
      ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}),
      ...(o.corsOrigins?.length ? { cors: { origins: o.corsOrigins } } : {}),
      ...(o.maxBodyBytes !== undefined ? { limits: { maxBodyBytes: o.maxBodyBytes } } : {}),
      drainTimeoutMs,
    });
  } catch (error) {
    process.stderr.write(`mistralrs-server: ${(error as Error).message}\n`);
    return 1;
  }
  if (o.apiKey === undefined && !isLoopbackHost(host)) {
    const management = models.models ? '; loading and unloading models over HTTP is turned off' : '';
    process.stderr.write(`mistralrs-server: warning: no --api-key, and ${host} is reachable from other machines${management}\n`);
  }
  process.stderr.write(`listening on ${server.url} (${label})\n`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // A second signal while draining: the user wants out now.
  const exitNow = () => process.exit(1);
  process.once('SIGINT', exitNow);
  process.once('SIGTERM', exitNow);
  process.stderr.write(`mistralrs-server: ${signal}: draining (requests in flight get ${drainTimeoutMs / 1000} s to finish)\n`);
  await server.close();
  process.off('SIGINT', exitNow);
  process.off('SIGTERM', exitNow);
  return 0;
}
