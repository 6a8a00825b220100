/**
 * `--grammar TEXT` / `--grammar-file PATH` with `--grammar-type`: the output of the chat or
 * the one-shot prompt follows a grammar. A file's type comes from its extension unless given
 * (`.json` a JSON schema, `.lark` Lark, `.regex` a regex, `.llguidance` llguidance's format).
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';

import { GRAMMAR_TYPES, type Grammar } from '@mistralrs/core';

import { UsageError } from './usage-error.js';

type GrammarType = (typeof GRAMMAR_TYPES)[number];

const BY_EXTENSION: Readonly<Record<string, GrammarType>> = {
  '.json': 'json_schema',
  '.lark': 'lark',
  '.regex': 'regex',
  '.llguidance': 'llguidance',
};

export interface GrammarArgs {
  grammar?: string;
  'grammar-file'?: string;
  'grammar-type'?: string;
}

/** The grammar the flags ask for, with where it came from (for error messages); undefined if none. */
export function grammarFromFlags(args: GrammarArgs): { grammar: Grammar; source: string } | undefined {
  const inline = args.grammar;
  const file = args['grammar-file'];
  if (inline !== undefined && file !== undefined) throw new UsageError('give --grammar or --grammar-file, not both');
  const typeFlag = args['grammar-type'];
  if (typeFlag !== undefined && !(GRAMMAR_TYPES as readonly string[]).includes(typeFlag)) {
    throw new UsageError(`--grammar-type must be one of ${GRAMMAR_TYPES.join(', ')}; got ${JSON.stringify(typeFlag)}`);
  }
  if (inline === undefined && file === undefined) {
    if (typeFlag === 'json_object') return { grammar: { type: 'json_object' }, source: '--grammar-type json_object' };
    if (typeFlag !== undefined) throw new UsageError('--grammar-type needs --grammar TEXT or --grammar-file PATH');
    return undefined;
  }
  let text: string;
  let type = typeFlag as GrammarType | undefined;
  let source: string;
  if (file !== undefined) {
    source = `grammar file ${file}`;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`${source}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
    }
    type ??= BY_EXTENSION[extname(file).toLowerCase()];
    if (!type) throw new UsageError(`${source}: give --grammar-type (its extension does not say: .json, .lark, .regex, .llguidance)`);
  } else {
    source = '--grammar';
    text = inline!;
    if (!type) throw new UsageError(`--grammar needs --grammar-type (${GRAMMAR_TYPES.join(', ')})`);
  }
  return { grammar: type === 'json_object' ? { type } : { type, value: text }, source };
}
