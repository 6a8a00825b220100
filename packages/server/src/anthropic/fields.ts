/**
 * Field checks the Anthropic routes share: the 400 in Anthropic's words (the field's path as
 * Anthropic writes it, `messages.0.content.1.type`, a colon, what is wrong), and the fields a
 * block or tool may have (anything else is refused, as Anthropic refuses it).
 */
import { invalidRequest, type ApiErrorCode } from '../errors.js';

/** A 400 in Anthropic's words: the field's path, a colon, what is wrong. */
export function fail(path: string, message: string, code: ApiErrorCode) {
  return invalidRequest(`${path}: ${message}`, path, code);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A block's fields: `type`, `cache_control` (no effect here), the required and the optional ones; nothing else. */
export function checkBlockFields(block: Record<string, unknown>, at: string, required: string[], optional: string[]): void {
  for (const field of required) {
    if (block[field] === undefined) throw fail(`${at}.${field}`, 'Field required', 'missing_required_parameter');
  }
  for (const key of Object.keys(block)) {
    if (key === 'type' || required.includes(key) || optional.includes(key)) continue;
    if (key === 'cache_control') readCacheControl(block[key], `${at}.cache_control`);
    else throw fail(`${at}.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
  }
}

/** Prompt caching hints: checked for shape; they change nothing in the answer. */
export function readCacheControl(value: unknown, at: string): void {
  if (value === undefined || value === null) return;
  if (!isObject(value) || value.type !== 'ephemeral') throw fail(`${at}.type`, `Input should be 'ephemeral'`, 'invalid_value');
  for (const key of Object.keys(value)) {
    if (key !== 'type' && key !== 'ttl') throw fail(`${at}.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
  }
  if (value.ttl !== undefined && value.ttl !== '5m' && value.ttl !== '1h')
    throw fail(`${at}.ttl`, `Input should be '5m' or '1h'`, 'invalid_value');
}
