import { createInterface } from 'node:readline/promises';

import type { ChatMessage, Engine } from '@mistralrs/core';

import { throughputLine, type RunOptions } from './commands/run.js';

const HELP = `Commands:
  \\help     this help
  \\clear    forget the conversation
  \\system TEXT   set the system message (and clear)
  \\exit     leave (Ctrl-D too); Ctrl-C stops a reply, or leaves at the prompt`;

/** The terminal chat: streams replies and keeps the conversation. */
export async function interactiveChat(engine: Engine, o: RunOptions): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  let messages: ChatMessage[] = [];
  let system: string | undefined;
  let abort: AbortController | undefined;
  rl.on('SIGINT', () => {
    if (abort) abort.abort();
    else rl.close();
  });
  process.stdout.write(`Chatting with ${engine.info.path} (${engine.info.architecture}). \\help for commands.\n`);
  rl.setPrompt('> ');
  rl.prompt();
  // The line iterator buffers input typed (or piped) while a reply is streaming; the loop
  // ends on Ctrl-D, Ctrl-C at the prompt, or the end of piped input.
  for await (const line of rl) {
    const input = line.trim();
    if (!input) {
      rl.prompt();
      continue;
    }
    if (input === '\\exit' || input === '\\quit') break;
    const reply = command(input);
    if (reply !== undefined) {
      process.stdout.write(`${reply}\n`);
      rl.prompt();
      continue;
    }
    const turn: ChatMessage[] = [...(system ? [{ role: 'system' as const, content: system }] : []), ...messages];
    turn.push({ role: 'user', content: input });
    abort = new AbortController();
    const generation = engine.chat({ ...o.sampling, maxTokens: o.maxTokens, messages: turn, signal: abort.signal });
    try {
      for await (const chunk of generation) process.stdout.write(chunk.text);
      const result = await generation.result;
      process.stdout.write(result.finishReason === 'cancelled' ? ' [stopped]\n' : '\n');
      messages.push({ role: 'user', content: input }, { role: 'assistant', content: result.text });
      if (o.throughput) process.stderr.write(`${throughputLine(result)}\n`);
    } catch (error) {
      process.stdout.write('\n');
      process.stderr.write(`error: ${(error as Error).message}\n`);
    } finally {
      abort = undefined;
    }
    rl.prompt();
  }
  rl.close();
  return 0;

  /** Handles a backslash command; undefined for ordinary input. */
  function command(input: string): string | undefined {
    if (input === '\\help') return HELP;
    if (input === '\\clear') {
      messages = [];
      return '(conversation cleared)';
    }
    if (input.startsWith('\\system')) {
      system = input.slice('\\system'.length).trim() || undefined;
      messages = [];
      return system ? '(system message set; conversation cleared)' : '(system message removed)';
    }
    if (input.startsWith('\\')) return `unknown command ${input.split(/\s/)[0]}; \\help lists them`;
    return undefined;
  }
}
