/** The architecture matrix in docs/architectures.md is the one the code's registry generates. */
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';

import { ARCHITECTURES, architectureMatrix, runtimeInfo } from '../../src/index.js';

const docPath = new URL('../../../../docs/architectures.md', import.meta.url);

describe('the architecture matrix', () => {
  it('in the docs equals the generated one', () => {
    const doc = readFileSync(docPath, 'utf8');
    const table = /<!-- architecture-matrix:start -->\n([\s\S]*?)\n<!-- architecture-matrix:end -->/.exec(doc)?.[1];
    expect(table).toBe(architectureMatrix());
  });

  it('has a row for every architecture the native registry builds', () => {
    const rows = new Set(ARCHITECTURES.map((r) => r.registryId));
    for (const id of runtimeInfo().architectures) expect(rows).toContain(id);
  });
});
