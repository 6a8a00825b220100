/** `--port N`: serve the OpenAI-compatible API until SIGINT or SIGTERM. */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';

import { DEFAULT_MODEL_ID, type Engine } from '@mistralrs/core';
import { DEFAULT_HOST, isLoopbackHost, startServer, type RunningServer } from '@mistralrs/server';

export interface ServeCliOptions {
  port: number;
  host?: string;
  apiKey?: string;
  corsOrigins?: string[];
  maxBodyBytes?: number;
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

/** Serves until a signal; a second signal exits at once. Returns the exit code. */
export async function serveCommand(engine: Engine, modelId: string, o: ServeCliOptions): Promise<number> {
  const host = o.host ?? DEFAULT_HOST;
  let server: RunningServer;
  try {
    server = await startServer({
      engine,
      modelId,
      port: o.port,
      host,
      ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}),
      ...(o.corsOrigins?.length ? { cors: { origins: o.corsOrigins } } : {}),
      ...(o.maxBodyBytes !== undefined ? { limits: { maxBodyBytes: o.maxBodyBytes } } : {}),
    });
  } catch (error) {
    process.stderr.write(`mistralrs-server: ${(error as Error).message}\n`);
    return 1;
  }
  if (o.apiKey === undefined && !isLoopbackHost(host)) {
    process.stderr.write(`mistralrs-server: warning: no --api-key, and ${host} is reachable from other machines\n`);
  }
  process.stderr.write(`listening on ${server.url} (${modelId})\n`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // A second signal while draining: the user wants out now.
  const exitNow = () => process.exit(1);
  process.once('SIGINT', exitNow);
  process.once('SIGTERM', exitNow);
  process.stderr.write(`mistralrs-server: ${signal}: closing (requests in flight get 5 s to finish)\n`);
  await server.close();
  process.off('SIGINT', exitNow);
  process.off('SIGTERM', exitNow);
  return 0;
}
