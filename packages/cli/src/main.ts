import {
  architectureMatrix,
  GRAMMAR_TYPES,
  knownArchitectureNames,
  type ModelFormat,
  WEIGHT_DTYPES,
  type WeightDtype,
  type SpeculativeOptions,
} from '@mistralrs/core';
import { parseByteSize } from '@mistralrs/server';
import yargs, { type Argv } from 'yargs';

import { fromConfigCommand } from './commands/from-config.js';
import { inspectCommand } from './commands/inspect.js';
import { pullCommand } from './commands/pull.js';
import { runCommand, type RunOptions } from './commands/run.js';
import type { ServeCliOptions } from './commands/serve.js';
import { engineFlags, engineSettings, NUMERIC_SETTINGS } from './engine-flags.js';
import { grammarFromFlags } from './grammar-flags.js';
import { SAMPLING_FLAGS, samplingFlags, samplingFromFlags } from './sampling-flags.js';
import { speculativeFlags, speculativeFromFlags } from './speculative-flags.js';
import { isModelsConfig } from './models-config.js';
import { readTomlSelector, TomlSelectorError, type TomlSelector } from './toml-selector.js';
import { UsageError } from './usage-error.js';

/** The options every run shares, whatever the model source (the seed's global flags). */
function runOptions<T>(y: Argv<T>) {
  return speculativeFlags(samplingFlags(engineFlags(y)))
    .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: 'chat in the terminal' })
    .option('prompt', { type: 'string', describe: 'complete one prompt (chat template applied) and exit' })
    .option('max-tokens', { alias: 'n', type: 'number', describe: 'generate at most N tokens' })
    .option('grammar', { type: 'string', describe: 'the output follows this grammar (with --grammar-type)' })
    .option('grammar-file', {
      type: 'string',
      describe: 'the output follows the grammar in this file (.json schema, .lark, .regex, .llguidance)',
    })
    .option('grammar-type', { type: 'string', describe: `the grammar's language: ${GRAMMAR_TYPES.join(', ')}` })
    .option('json', { type: 'boolean', default: false, describe: 'with --prompt: print one JSON object' })
    .option('throughput', { type: 'boolean', default: false, describe: 'log prompt and generation tokens/s' })
    .option('chat-template', { type: 'string', describe: 'chat template file (.jinja or tokenizer_config.json) or inline template' })
    .option('token-source', {
      type: 'string',
      describe: 'Hugging Face token: literal:T, env:VAR, path:FILE, cache (the default: HF_TOKEN, then the token file), none',
    })
    .option('revision', { type: 'string', describe: "the Hub repository's branch, tag or commit (default main)" })
    .option('tok-model-id', {
      alias: 't',
      type: 'string',
      describe: "another tokenizer: a folder with tokenizer.json or a Hub repository; its tokenizer and chat template win over the model's",
    })
    .option('dtype', {
      alias: 'd',
      type: 'string',
      describe: `how a safetensors folder's float matrices are stored: ${WEIGHT_DTYPES.join(', ')} (auto, the default, keeps the checkpoint's); a GGUF keeps its types`,
    })
    .option('port', {
      alias: 'p',
      type: 'number',
      describe: 'serve the OpenAI-compatible HTTP API on this port (0: any free port) instead of chatting',
    })
    .option('host', { type: 'string', describe: 'with --port: the address to bind (default 127.0.0.1; 0.0.0.0 for every interface)' })
    .option('api-key', { type: 'string', describe: 'with --port: require "Authorization: Bearer KEY" on every route but /health' })
    .option('cors-origin', {
      type: 'string',
      array: true,
      describe: 'with --port: let browser pages from this origin call the API (repeatable; * for any)',
    })
    .option('max-body', { type: 'string', describe: 'with --port: the largest request body (default 4mb)' })
    .option('drain-timeout', {
      type: 'number',
      describe: 'with --port: seconds requests in flight may finish in after SIGINT or SIGTERM before they end with an error (default 10)',
    });
}

type RunArgs = Awaited<ReturnType<ReturnType<typeof runOptions>['parseAsync']>>;

/** The flags of a chat or `--prompt`, which a server takes per request instead. */
const GENERATION_FLAGS = ['prompt', 'interactive', 'max-tokens', 'json', 'throughput', ...SAMPLING_FLAGS] as const;
/** The flags of a server, which mean nothing without `--port`. */
const SERVER_FLAGS = ['host', 'api-key', 'cors-origin', 'max-body', 'drain-timeout'] as const;
/** Every flag of a run, refused by the commands that load no model. */
const RUN_FLAGS = [
  ...GENERATION_FLAGS,
  ...SERVER_FLAGS,
  'port',
  'grammar',
  'grammar-file',
  'grammar-type',
  'chat-template',
  'token-source',
  'revision',
  'tok-model-id',
  'dtype',
  ...Object.values(NUMERIC_SETTINGS).map((s) => s.flag),
  'prefix-cache',
  'pa-cache-type',
] as const;

/** The flags among `names` that the command line set (a boolean only when true). */
function given(args: Record<string, unknown>, names: readonly string[]): string[] {
  return names.filter((name) => args[name] !== undefined && args[name] !== false);
}

/** Refuses flags that would be ignored by what the command line asks for. */
function refuseIgnoredFlags(args: RunArgs, serving: boolean): void {
  const flags = args as unknown as Record<string, unknown>;
  if (serving) {
    const ignored = given(flags, GENERATION_FLAGS);
    if (ignored.length > 0) {
      throw new UsageError(`${ignored.map((f) => `--${f}`).join(', ')} apply to the chat and --prompt; a server takes them per request`);
    }
  } else {
    const ignored = given(flags, SERVER_FLAGS);
    if (ignored.length > 0) throw new UsageError(`${ignored.map((f) => `--${f}`).join(', ')} apply to a server: add --port`);
    if (args.prompt !== undefined && args.interactive) throw new UsageError('give --prompt TEXT or -i, not both');
    if (args.json && args.prompt === undefined) throw new UsageError('--json prints the answer to --prompt; give --prompt TEXT');
  }
  const maxTokens = args['max-tokens'];
  if (maxTokens !== undefined && !(Number.isSafeInteger(maxTokens) && maxTokens >= 1)) {
    throw new UsageError(`--max-tokens must be a positive integer${Number.isNaN(maxTokens) ? '' : `, got ${maxTokens}`}`);
  }
  const dtype = args.dtype;
  if (dtype !== undefined && !(WEIGHT_DTYPES as readonly string[]).includes(dtype)) {
    throw new UsageError(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  }
}

/** For the commands that load no model: a run's flags would be ignored, so they are refused. */
function refuseRunFlags(args: Record<string, unknown>, command: string, allowed: readonly string[] = []): void {
  const ignored = given(args, RUN_FLAGS).filter((flag) => !allowed.includes(flag));
  if (ignored.length > 0) throw new UsageError(`${ignored.map((f) => `--${f}`).join(', ')} do not apply to ${command}`);
}

function toRunOptions(
  args: RunArgs,
  model: string | undefined,
  file: string | readonly string[] | undefined,
  toml?: TomlSelector,
  architecture?: string,
  format?: ModelFormat,
): RunOptions {
  const serve = serveOptions(args, toml);
  refuseIgnoredFlags(args, serve !== undefined);
  const grammar = grammarFromFlags(args);
  if (serve && grammar) {
    throw new UsageError(
      '--grammar and --grammar-file apply to the chat and --prompt; a server takes a grammar per request (response_format, grammar)',
    );
  }
  const dtype = args.dtype as WeightDtype | undefined;
  const tokenizerModel = args['tok-model-id'] ?? toml?.tokenizerModel;
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
    ...(args.revision !== undefined ? { revision: args.revision } : {}),
    ...(tokenizerModel !== undefined ? { tokenizerModel } : {}),
    ...(format !== undefined ? { format } : {}),
    engine: {
      ...engineSettings(args, toml?.engine),
      ...optionalSpeculative(speculativeFromFlags(args, toml?.engine.speculative)),
      ...(dtype !== undefined ? { dtype } : {}),
      ...(architecture !== undefined ? { architecture } : {}),
    },
    grammar,
    sampling: samplingFromFlags(args),
  };
}

function optionalSpeculative(speculative: SpeculativeOptions | undefined): { speculative?: SpeculativeOptions } {
  return speculative ? { speculative } : {};
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

/** mistral.rs's `serve` port. */
const DEFAULT_SERVE_PORT = 1234;

const QUANTIZED_FILENAME = {
  alias: 'f',
  type: 'string',
  array: true,
  describe: 'the .gguf file in the folder or repository (repeat it, or name the first part, for a split GGUF)',
} as const;

function architectureOption() {
  return {
    alias: 'a',
    type: 'string',
    describe: `the architecture the model must be (${knownArchitectureNames().join(', ')})`,
  } as const;
}

/** `run` and `serve`: mistral.rs's model selection, whatever the format. */
function modelSelection<T>(y: Argv<T>) {
  return y
    .option('model-id', {
      alias: 'm',
      type: 'string',
      describe: 'a .gguf file, a folder, a registry id or a Hub repository (org/name, org/name:QUANT); the default model if absent',
    })
    .option('quantized-filename', QUANTIZED_FILENAME)
    .option('arch', architectureOption());
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const parser = runOptions(yargs(argv))
    .scriptName('mistralrs-server')
    .usage(
      '$0 [run -m MODEL | serve -m MODEL -p PORT | gguf -m MODEL -f FILE | plain -m MODEL | embedding -m MODEL | toml -f FILE.toml | inspect FILE | pull MODEL] [options]',
    )
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
      'Run a GGUF model: -m FOLDER -f FILE, -m FILE.gguf, -m REGISTRY_ID, -m ORG/REPO -f FILE or -m ORG/REPO:Q4_K_M (Hugging Face Hub)',
      (y) =>
        y
          .option('model-id', {
            alias: 'm',
            type: 'string',
            demandOption: true,
            describe: 'folder, .gguf file, registry id, or Hub repository (org/name, org/name:QUANT)',
          })
          .option('quantized-filename', QUANTIZED_FILENAME),
      async (args) => {
        exitCode = await runCommand(toRunOptions(args, args['model-id'], args['quantized-filename'], undefined, undefined, 'gguf'));
      },
    )
    .command(
      'plain',
      'Run a Hugging Face safetensors model: a folder or a Hub repository (-m DIR or ORG/REPO, -a ARCH)',
      (y) =>
        y
          .option('model-id', { alias: 'm', type: 'string', demandOption: true, describe: 'folder or Hub repository (org/name)' })
          .option('arch', architectureOption()),
      async (args) => {
        // config.json's model_type names the architecture; -a must agree with it.
        exitCode = await runCommand(toRunOptions(args, args['model-id'], undefined, undefined, args.arch, 'plain'));
      },
    )
    .command(
      'embedding',
      `Serve an embedding model (a sentence-transformers folder or Hub repository: EmbeddingGemma, Qwen3-Embedding) on POST /v1/embeddings: -m MODEL [-p PORT, default ${DEFAULT_SERVE_PORT}], or print one text's embedding with --prompt`,
      (y) =>
        y
          .option('model-id', { alias: 'm', type: 'string', demandOption: true, describe: 'folder or Hub repository (org/name)' })
          .option('arch', architectureOption()),
      async (args) => {
        const serving = args.prompt === undefined ? { ...args, port: args.port ?? DEFAULT_SERVE_PORT } : args;
        exitCode = await runCommand({
          ...toRunOptions(serving, args['model-id'], undefined, undefined, args.arch, 'plain'),
          kind: 'embedding',
        });
      },
    )
    .command(
      'run',
      'Run a model (-m: a path, registry id or Hub repository; GGUF or safetensors, told by its files): chat, --prompt, or --port',
      (y) => modelSelection(y),
      async (args) => {
        exitCode = await runCommand(toRunOptions(args, args['model-id'], args['quantized-filename'], undefined, args.arch));
      },
    )
    .command(
      'serve',
      `Serve a model over the OpenAI-compatible API: -m MODEL [-p PORT, default ${DEFAULT_SERVE_PORT}]`,
      (y) => modelSelection(y),
      async (args) => {
        const serving = { ...args, port: args.port ?? DEFAULT_SERVE_PORT };
        exitCode = await runCommand(toRunOptions(serving, args['model-id'], args['quantized-filename'], undefined, args.arch));
      },
    )
    .command(
      'toml',
      'Run the model a TOML selector file names (-f FILE.toml); its [server] table or --port serves it. A file with [[models]] serves them all (as from-config)',
      (y) =>
        y.option('file', { alias: 'f', type: 'string', demandOption: true, describe: 'the .toml selector file' }).option('max-memory', {
          type: 'string',
          describe: 'with [[models]]: the memory the loaded models may take (default 90% of RAM)',
        }),
      async (args) => {
        if (await isModelsConfig(args.file)) {
          refuseRunFlags(args, 'a config with [[models]] (set them per model in the file)', ['port', ...SERVER_FLAGS]);
          exitCode = await fromConfigCommand({
            file: args.file,
            serveOptions: (server) => serveOptions(args, { server, engine: {} })!,
            maxMemory: args['max-memory'],
          });
          return;
        }
        if (args['max-memory'] !== undefined) throw new UsageError('--max-memory applies to a config with [[models]]');
        let selector: TomlSelector;
        try {
          selector = await readTomlSelector(args.file);
        } catch (error) {
          if (!(error instanceof TomlSelectorError)) throw error;
          process.stderr.write(`mistralrs-server: ${error.message}\n`);
          exitCode = 1;
          return;
        }
        exitCode = await runCommand(toRunOptions(args, selector.model, selector.file, selector, selector.arch));
      },
    )
    .command(
      'from-config',
      "Serve the models a config file lists ([[models]] tables in TOML, or the same as .json), as mistral.rs's from-config",
      (y) =>
        y
          .option('file', { alias: 'f', type: 'string', demandOption: true, describe: 'the .toml (or .json) config' })
          .option('max-memory', { type: 'string', describe: 'the memory the loaded models may take, e.g. 12gb (default 90% of RAM)' }),
      async (args) => {
        refuseRunFlags(args, 'from-config (set them per model in the file)', ['port', ...SERVER_FLAGS]);
        exitCode = await fromConfigCommand({
          file: args.file,
          serveOptions: (server) => serveOptions(args, { server, engine: {} })!,
          maxMemory: args['max-memory'],
        });
      },
    )
    .command(
      'inspect [file]',
      'Print the metadata and tensor table of a GGUF or safetensors file or folder (default: the default model)',
      (y) =>
        y
          .positional('file', { type: 'string', describe: 'a .gguf or .safetensors file, a model folder, or a registry model id' })
          .option('max-array', {
            type: 'number',
            defaultDescription: '8',
            describe: 'array items shown per metadata key (text output only)',
          }),
      async (args) => {
        refuseRunFlags(args, 'inspect', ['json']);
        if (args.json && args['max-array'] !== undefined)
          throw new UsageError('--max-array shapes the text output; --json prints every item');
        exitCode = await inspectCommand({ file: args.file, json: args.json, maxArray: args['max-array'] ?? 8 });
      },
    )
    .command(
      'architectures',
      "Print the architecture matrix (which of mistral.rs's architectures this build runs) as Markdown",
      (y) => y,
      (args) => {
        refuseRunFlags(args, 'architectures');
        process.stdout.write(`${architectureMatrix()}\n`);
        exitCode = 0;
      },
    )
    .command(
      'pull [model]',
      'Fetch a model into the cache and print its path: a registry model, or a Hub repository (org/name -f FILE, org/name:QUANT, org/name)',
      (y) =>
        y
          .positional('model', { type: 'string', describe: 'registry model id or Hub repository (default: the default model)' })
          .option('quantized-filename', QUANTIZED_FILENAME)
          .option('list', { type: 'boolean', default: false, describe: 'list the registry models' }),
      async (args) => {
        refuseRunFlags(args, 'pull', ['token-source', 'revision']);
        if (args.list && args.model !== undefined) throw new UsageError('give a model to pull or --list, not both');
        exitCode = await pullCommand({
          model: args.model,
          list: args.list,
          files: args['quantized-filename'],
          tokenSource: args['token-source'],
          revision: args.revision,
        });
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
