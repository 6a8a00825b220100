/** Listening for real: the app on a host and port, and a graceful close. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { createApp, type AppOptions } from './app.js';
import { ApiError } from './errors.js';
import { LOOPBACK_HOSTS } from './host-check.js';

export interface ServeOptions extends AppOptions {
  /** The address to bind; 127.0.0.1 unless given (0.0.0.0 exposes the server to the network). */
  host?: string;
  /** 0 picks a free port (read it back from `RunningServer.port`). */
  port: number;
  /** How long `close()` lets requests in flight finish before cutting them off. Default 5000. */
  shutdownTimeoutMs?: number;
}

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:8080`. */
  readonly url: string;
  /**
   * Stops taking requests (new ones get 503), lets those in flight finish for up to
   * `shutdownTimeoutMs`, then closes every connection (which cancels what is left).
   * The engine is the caller's to close.
   */
  close(): Promise<void>;
}

export const DEFAULT_HOST = '127.0.0.1';

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? DEFAULT_HOST;
  const allowedHosts = options.allowedHosts ?? (isLoopbackHost(host) ? LOOPBACK_HOSTS : undefined);
  const app = createApp({ ...options, ...(allowedHosts ? { allowedHosts } : {}) });
  let draining = false;
  const server = createServer((req, res) => {
    if (!draining) return void app(req, res);
    const body = new ApiError(503, 'service_unavailable', 'the server is shutting down', null, 'server_shutting_down').toBody();
    res.writeHead(503, { 'Content-Type': 'application/json', Connection: 'close' }).end(JSON.stringify(body));
  });
  await listen(server, options.port, host);
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () => {
      draining = true;
      closing ??= shutDown(server, options.shutdownTimeoutMs ?? 5000);
      return closing;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const reason =
        error.code === 'EADDRINUSE' ? 'the port is in use' : error.code === 'EACCES' ? 'permission denied' : error.message;
      reject(new Error(`cannot listen on ${host}:${port}: ${reason}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function shutDown(server: Server, timeoutMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([closed, timedOut]);
  clearTimeout(timer);
  // Whatever is still open is cut: its 'close' aborts its generations.
  server.closeAllConnections();
  await closed;
}

/** Whether binding `host` keeps the server on this machine (localhost, ::1, 127.x.x.x). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
