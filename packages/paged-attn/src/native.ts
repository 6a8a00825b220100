// The only module that loads this package's addon; everything else imports from here.
import { createRequire } from 'node:module';
import type * as Binding from '../binding/index.cjs';

const require = createRequire(import.meta.url);

export const binding: typeof Binding = require('../binding/index.cjs');
export type { Binding };
