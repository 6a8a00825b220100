/** Listening for real: the app on a host and port, and a graceful close (a drain). */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { createApp, type AppModels, type AppSettings } from './app.js';
import { ApiError, shuttingDown, type ApiErrorCode } from './errors.js';
import { LOOPBACK_HOSTS } from './host-check.js';

export type ServeOptions = AppModels & Omit<AppSettings, 'shutdownSignal'> & ListenOptions;

export interface ListenOptions {
  /** The address to bind; 127.0.0.1 unless given (0.0.0.0 exposes the server to the network). */
  host?: string;
  /** 0 picks a free port (read it back from `RunningServer.port`). */
  port: number;
  /** How long `close()` lets requests in flight finish (the drain). Default 10,000 ms. */
  drainTimeoutMs?: number;
}

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:8080`. */
  readonly url: string;
  /**
   * Drains: new requests get a 503 (`server_shutting_down`) at once; requests in flight may
   * finish for up to `drainTimeoutMs`. Those still running then end with an error: a stream
   * with an error event and `data: [DONE]`, any other with a 503. Nothing is cut silently.
   * Resolves when every response is complete and every connection closed. The engine is the
   * caller's to close.
   */
  close(): Promise<void>;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
/**
 * After the drain time, how long requests get to write their error: cancelled sequences end
 * at the engine's next step. Connections still open then (a request stuck before the engine)
 * are closed.
 */
const AFTER_DRAIN_MS = 10_000;

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? DEFAULT_HOST;
  const allowedHosts = options.allowedHosts ?? (isLoopbackHost(host) ? LOOPBACK_HOSTS : undefined);
  // On loopback only this machine's users reach the server (and the Host check above keeps
  // web pages out): loading models is theirs to do even without an API key.
  const allowModelManagement = options.allowModelManagement ?? (options.apiKey !== undefined || isLoopbackHost(host));
  const shutdown = new AbortController();
  const app = createApp({ ...options, ...(allowedHosts ? { allowedHosts } : {}), allowModelManagement, shutdownSignal: shutdown.signal });
  const inFlight = new Set<ServerResponse>();
  let draining = false;
  const server = createServer((req, res) => {
    if (draining) return void sendRaw(res, shuttingDown());
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    void app(req, res);
  });
  server.on('clientError', answerClientError);
  await listen(server, options.port, host);
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () => {
      draining = true;
      closing ??= drain(server, inFlight, shutdown, options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
      return closing;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the port is in use' : error.code === 'EACCES' ? 'permission denied' : error.message;
      reject(new Error(`cannot listen on ${host}:${port}: ${reason}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * The server keeps listening while it drains, so that a request arriving meanwhile gets a
 * 503 it can act on (a load balancer retries it elsewhere) rather than a refused connection.
 */
async function drain(server: Server, inFlight: Set<ServerResponse>, shutdown: AbortController, timeoutMs: number): Promise<void> {
  // Idle keep-alive connections stay open too: closing one under a client that is just
  // sending on it would reset that request instead of answering it.
  if (!(await settled(inFlight, timeoutMs))) {
    shutdown.abort();
    await settled(inFlight, AFTER_DRAIN_MS);
  }
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/** Whether every response in `responses` completed within `timeoutMs`. */
async function settled(responses: Set<ServerResponse>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (responses.size > 0) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise((resolve) => responses.values().next().value!.once('close', resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, left))),
    ]);
    clearTimeout(timer);
  }
  return true;
}

function sendRaw(res: ServerResponse, error: ApiError): void {
  res.writeHead(error.status, { 'Content-Type': 'application/json', ...error.headers }).end(JSON.stringify(error.toBody()));
}

/**
 * What Node's HTTP parser refuses before any route sees it: headers past `maxHeaderSize`
 * (16 KiB), a malformed request line or header, a request that took too long to arrive. Node
 * answers those with a bare status line; clients get the same JSON error object as always.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  const response = (socket as Socket & { _httpMessage?: IncomingMessage })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || response !== undefined) {
    socket.destroy();
    return;
  }
  const [status, code, message] = clientErrorAnswer(error);
  const body = JSON.stringify(new ApiError(status, 'invalid_request_error', message, null, code).toBody());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function clientErrorAnswer(error: NodeJS.ErrnoException): [number, ApiErrorCode, string] {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'request_header_fields_too_large', 'the request headers are larger than the server accepts (16 KiB in all)'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return [408, 'request_timeout', 'the request did not arrive in time'];
    default:
      return [400, 'bad_request', `the request is not valid HTTP (${error.code ?? error.message})`];
  }
}

/** Whether binding `host` keeps the server on this machine (localhost, ::1, 127.x.x.x). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
