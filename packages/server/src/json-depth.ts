/**
 * How deep a request body nests. JSON.parse takes any depth, but what the server does with
 * the parts later recurses: JSON.stringify of a schema or a tool's parameters, the copy of a
 * message into the template worker, the native grammar compiler (serde_json stops at 128
 * levels, llguidance's recursion runs on a stack of its own). A body deeper than the limit is
 * refused up front, naming the field that nests too deep, with an explicit stack (no
 * recursion here either).
 */
import { invalidRequest } from './errors.js';

/** Path components after which `param` stops: the field a client set, not a path into it. */
const FIELD_ENDS: ReadonlySet<string> = new Set(['schema', 'parameters', 'value', 'arguments', 'content']);
const MAX_PARAM_COMPONENTS = 5;

/** Throws 400 `json_too_deep` when `body` has objects or arrays nested more than `maxDepth` deep. */
export function checkJsonDepth(body: unknown, maxDepth: number): void {
  // Each entry: a value, its depth, and the entry it sits in (to rebuild the path if needed).
  interface Frame {
    value: unknown;
    depth: number;
    key: string | number;
    parent: Frame | undefined;
  }
  const stack: Frame[] = [{ value: body, depth: 0, key: '', parent: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const { value, depth } = frame;
    if (value === null || typeof value !== 'object') continue;
    if (depth + 1 > maxDepth) {
      const param = fieldOf(frame);
      throw invalidRequest(
        `${param ?? 'the request body'} nests objects and arrays more than ${maxDepth} levels deep`,
        param,
        'json_too_deep',
      );
    }
    if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) stack.push({ value: item, depth: depth + 1, key: index, parent: frame });
    } else {
      for (const [key, item] of Object.entries(value)) stack.push({ value: item, depth: depth + 1, key, parent: frame });
    }
  }

  function fieldOf(frame: Frame): string | null {
    const keys: Array<string | number> = [];
    for (let f: Frame | undefined = frame; f?.parent; f = f.parent) keys.push(f.key);
    keys.reverse();
    let path = '';
    for (const [i, key] of keys.entries()) {
      // An array in an array is no field of its own.
      if (typeof key === 'number' && typeof keys[i - 1] === 'number') break;
      path += typeof key === 'number' ? `[${key}]` : i === 0 ? key : `.${key}`;
      if (i + 1 >= MAX_PARAM_COMPONENTS || (typeof key === 'string' && FIELD_ENDS.has(key))) break;
    }
    return path === '' ? null : path;
  }
}
