/**
 * Fixtures that live outside the repository: `../shared/fixtures` beside it (vocabulary GGUFs
 * and their reference vectors, the OpenAI API description) and files of dev dependencies.
 * Every jest test that needs one says so here, and this module alone decides what happens
 * when one is missing: the tests that need it fail, naming the path, unless
 * `MISTRALRS_ALLOW_MISSING_FIXTURES=1` is set; then they are registered as skipped (jest
 * reports them skipped, never passed). The Rust tests follow the same rule
 * (`mistralrs_common::test_support`); see docs/testing.md.
 *
 *   const vocab = needsFixtures('the Llama vocabulary', [sharedFixture('vocab', 'x.gguf')]);
 *   vocab.describe('...', () => { ... });   // or vocab.it, vocab.describe.each, ...
 */
import { describe, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The opt-out: set to `1`, missing fixtures skip the tests that need them. */
export const ALLOW_MISSING_FIXTURES = 'MISTRALRS_ALLOW_MISSING_FIXTURES';

/** `shared/fixtures` in the folder beside the repository (this file is in test-support/). */
export const sharedFixturesDir = fileURLToPath(new URL('../../shared/fixtures/', import.meta.url));

/** A path under `shared/fixtures`. */
export function sharedFixture(...parts: string[]): string {
  return join(sharedFixturesDir, ...parts);
}

export function missingFixturesAllowed(): boolean {
  return process.env[ALLOW_MISSING_FIXTURES] === '1';
}

export interface FixtureGate {
  /** Whether every path exists (the tests run). */
  readonly present: boolean;
  /** jest's `describe` when the fixtures are present, `describe.skip` otherwise. */
  readonly describe: typeof describe;
  /** jest's `it` when the fixtures are present, `it.skip` otherwise. */
  readonly it: typeof it;
}

/**
 * The gate of tests that need every one of `paths` (`what` names them in messages). Call it
 * where the tests are registered (a module's top level or a `describe` body): when a path is
 * missing and the opt-out is not set, it registers there one failing test that names the
 * missing paths, and the gated tests are skipped.
 */
export function needsFixtures(what: string, paths: string[]): FixtureGate {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length === 0) return { present: true, describe, it };
  const skipped = { present: false, describe: describe.skip as typeof describe, it: it.skip as typeof it };
  const message =
    `missing fixture${missing.length > 1 ? 's' : ''} for ${what}: ${missing.join(', ')} ` +
    `(the shared fixtures live in ../shared beside the repository; set ${ALLOW_MISSING_FIXTURES}=1 ` +
    'to report the tests that need them as skipped)';
  if (!missingFixturesAllowed()) {
    it(`has the fixtures for ${what}`, () => {
      throw new Error(message);
    });
  }
  return skipped;
}
