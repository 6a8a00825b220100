#!/usr/bin/env node
import { main } from '../dist/main.js';

// `mistralrs-server inspect x.gguf | head` closes the pipe early: that is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
process.exitCode = await main(process.argv.slice(2));
