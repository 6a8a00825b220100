/**
 * The headless Chromium the web UI's test drives: `$CHROMIUM_PATH`, else `chromium` or
 * `chromium-browser` on the PATH (scripts/setup.sh installs Debian's `chromium`). A missing one
 * is a missing fixture (test-support/fixtures.ts): the run fails with a test that says how to
 * install it, unless MISTRALRS_ALLOW_MISSING_FIXTURES=1 reports the tests skipped.
 */
import { describe, it } from '@jest/globals';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ALLOW_MISSING_FIXTURES, missingFixturesAllowed } from '../../../../test-support/fixtures.js';

const NAMES = ['chromium', 'chromium-browser'];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Chromium executable, or why there is none. */
export function findChromium(): { path: string } | { missing: string } {
  const configured = process.env.CHROMIUM_PATH;
  if (configured) {
    return isExecutable(configured) ? { path: configured } : { missing: `CHROMIUM_PATH=${configured} is not an executable file` };
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of NAMES) if (isExecutable(join(dir, name))) return { path: join(dir, name) };
  }
  return { missing: `no ${NAMES.join(' or ')} on the PATH and CHROMIUM_PATH is not set` };
}

/**
 * jest's `describe` when Chromium is there; otherwise one failing test naming what is missing
 * and how to install it (or, with the opt-out, `describe.skip`).
 */
export function needsChromium(): { path: string; describe: typeof describe } {
  const found = findChromium();
  if ('path' in found) return { path: found.path, describe };
  const message =
    `headless Chromium not found (${found.missing}): the web UI's tests drive a real browser. ` +
    'Install it with scripts/setup.sh (Debian: apt-get install chromium) or point CHROMIUM_PATH at one; ' +
    `set ${ALLOW_MISSING_FIXTURES}=1 to report these tests as skipped`;
  if (!missingFixturesAllowed()) {
    it('has a headless Chromium', () => {
      throw new Error(message);
    });
  }
  return { path: '', describe: describe.skip as typeof describe };
}

/** `test-artifacts/<name>/` at the repository's root (gitignored), created. */
export function artifactsDir(name: string): string {
  const dir = fileURLToPath(new URL(`../../../../test-artifacts/${name}/`, import.meta.url));
  mkdirSync(dir, { recursive: true });
  return dir;
}
