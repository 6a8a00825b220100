/**
 * The lock around a blob's download: an advisory `flock` on huggingface_hub's lock file, taken
 * natively (Node has no flock), polled rather than waited on in a thread, so a long download
 * elsewhere ties up nothing here.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { binding, type Binding } from '../native.js';

const POLL_MS = 250;

/** Resolves with the held lock; `onWait` runs once if another holder makes us wait. */
export async function lockFile(path: string, onWait: () => void): Promise<Binding.FileLock> {
  let waited = false;
  for (;;) {
    const lock = binding.tryLockFile(path);
    if (lock) return lock;
    if (!waited) {
      waited = true;
      onWait();
    }
    await sleep(POLL_MS);
  }
}
