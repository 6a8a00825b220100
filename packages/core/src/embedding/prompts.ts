/**
 * sentence-transformers' prompts (`config_sentence_transformers.json`): named texts put
 * before an input, such as Qwen3-Embedding's `Instruct: …\nQuery:` or EmbeddingGemma's
 * `task: search result | query: `; `default_prompt_name` names the one used when a request
 * names none.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SentenceTransformerPrompts {
  prompts: Readonly<Record<string, string>>;
  defaultPromptName: string | undefined;
}

export function readPrompts(dir: string): SentenceTransformerPrompts {
  const path = join(dir, 'config_sentence_transformers.json');
  if (!existsSync(path)) return { prompts: {}, defaultPromptName: undefined };
  let config: { prompts?: unknown; default_prompt_name?: unknown };
  try {
    config = JSON.parse(readFileSync(path, 'utf8')) as typeof config;
  } catch (error) {
    throw new Error(`${path}: not valid JSON: ${(error as Error).message}`);
  }
  const prompts: Record<string, string> = {};
  if (config.prompts !== undefined && config.prompts !== null) {
    if (typeof config.prompts !== 'object' || Array.isArray(config.prompts)) throw new Error(`${path}: \`prompts\` is not an object`);
    for (const [name, text] of Object.entries(config.prompts)) {
      if (typeof text !== 'string') throw new Error(`${path}: prompt \`${name}\` is not a string`);
      prompts[name] = text;
    }
  }
  const named = config.default_prompt_name;
  if (named !== undefined && named !== null && (typeof named !== 'string' || !(named in prompts))) {
    throw new Error(`${path}: \`default_prompt_name\` ${JSON.stringify(named)} names no prompt`);
  }
  return { prompts, defaultPromptName: typeof named === 'string' ? named : undefined };
}
