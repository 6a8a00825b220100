/**
 * What the body parser and the decompressor under it throw, mapped to OpenAI errors: every one
 * a 4xx with a code, none an internal error. The errors are the real ones (zlib's, and
 * body-parser's shapes: a `type`, or the 400 status and `expose` it puts on what it rethrows).
 */
import { describe, expect, it } from '@jest/globals';
import { brotliDecompressSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';

import { fromBodyParser, isInternal, toApiError } from '../../src/errors.js';

/** The error `decode(input)` throws, as body-parser passes it on (status 400, exposed). */
function zlibError(decode: (input: Buffer) => unknown, input: Buffer): Error {
  try {
    decode(input);
  } catch (error) {
    return Object.assign(error as Error, { status: 400, statusCode: 400, expose: true });
  }
  throw new Error('decoded');
}

const parserError = (type: string, message: string, status: number, extra: object = {}) =>
  Object.assign(new Error(message), { type, status, statusCode: status, expose: true, ...extra });

const json = Buffer.from('{"messages": []}');

describe('body errors', () => {
  it.each([
    ['not gzip', zlibError(gunzipSync, json), 400, 'invalid_content_encoding'],
    ['truncated gzip', zlibError(gunzipSync, gzipSync(json).subarray(0, 12)), 400, 'invalid_content_encoding'],
    ['not deflate', zlibError(inflateSync, json), 400, 'invalid_content_encoding'],
    ['not brotli', zlibError(brotliDecompressSync, Buffer.from('this is not brotli at all {}')), 400, 'invalid_content_encoding'],
    ['aborted mid-body', parserError('request.aborted', 'request aborted', 400), 400, 'request_aborted'],
    [
      'shorter than Content-Length',
      parserError('request.size.invalid', 'request size did not match content length', 400),
      400,
      'bad_request',
    ],
    ['not JSON', parserError('entity.parse.failed', 'Unexpected token', 400), 400, 'invalid_json'],
    ['over the limit', parserError('entity.too.large', 'request entity too large', 413, { limit: 10 }), 413, 'request_too_large'],
    ['an unknown encoding', parserError('encoding.unsupported', 'unsupported content encoding "lzma"', 415), 415, 'unsupported_encoding'],
    ['another exposed 4xx', Object.assign(new Error('odd'), { status: 400, expose: true }), 400, 'bad_request'],
  ])('%s → %s %s', (_name, error, status, code) => {
    const apiError = fromBodyParser(error);
    expect(apiError).toBeDefined();
    expect(toApiError(error)).toMatchObject({ status, code, param: null });
    expect(isInternal(toApiError(error))).toBe(false);
  });

  it('leaves errors that are not the body’s to the 500 path', () => {
    expect(fromBodyParser(new Error('disk on fire'))).toBeUndefined();
    expect(toApiError(new Error('disk on fire'))).toMatchObject({ status: 500, code: 'internal_error' });
  });
});
