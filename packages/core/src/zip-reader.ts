/**
 * Reads zip files (wheels, and the archives registry models are sliced from) with Node alone:
 * the central directory (zip64 included), then one entry at a time, stored or deflated, its
 * CRC-32 and size checked while it streams. Encrypted entries and other methods are refused.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw } from 'node:zlib';

export interface ZipEntry {
  /** The path inside the archive, `/`-separated as stored (a folder's ends with `/`). */
  name: string;
  isDirectory: boolean;
  /** Neither a file nor a folder (a symbolic link, a device…), by its Unix mode. */
  isSpecial: boolean;
  method: number;
  crc32: number;
  compressedSizeBytes: number;
  sizeBytes: number;
  localHeaderOffset: number;
}

export class ZipError extends Error {
  override readonly name = 'ZipError';
  readonly code = 'ZipError';
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;

export class ZipReader {
  private constructor(
    readonly path: string,
    readonly entries: readonly ZipEntry[],
  ) {}

  static async open(path: string): Promise<ZipReader> {
    const file = await open(path, 'r');
    try {
      return new ZipReader(path, await readCentralDirectory(path, file));
    } finally {
      await file.close();
    }
  }

  /**
   * Streams an entry's bytes into `out` (a file, created or appended to), checking its size and
   * CRC-32; returns the sha256 of those bytes.
   */
  async extract(entry: ZipEntry, out: string, flags: 'w' | 'a' = 'w'): Promise<string> {
    const dataStart = await this.#dataStart(entry);
    const hash = createHash('sha256');
    let crc = 0;
    let sizeBytes = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, done: TransformCallback) {
        sizeBytes += chunk.length;
        // More than the directory says (a zip bomb?): stop before writing it.
        if (sizeBytes > entry.sizeBytes) return done(new Error(`it inflates past its ${entry.sizeBytes} bytes`));
        crc = crc32(chunk, crc);
        hash.update(chunk);
        done(null, chunk);
      },
    });
    const source =
      entry.compressedSizeBytes === 0
        ? new PassThrough().end()
        : createReadStream(this.path, { start: dataStart, end: dataStart + entry.compressedSizeBytes - 1 });
    const stages = entry.method === 8 ? [source, createInflateRaw(), check] : [source, check];
    try {
      await pipeline([...stages, createWriteStream(out, { flags })]);
    } catch (error) {
      throw new ZipError(`${this.path}: ${entry.name}: ${(error as Error).message}`);
    }
    if (sizeBytes !== entry.sizeBytes || crc >>> 0 !== entry.crc32) {
      throw new ZipError(`${this.path}: ${entry.name} is damaged (its size or CRC-32 differs from the central directory)`);
    }
    return hash.digest('hex');
  }

  async #dataStart(entry: ZipEntry): Promise<number> {
    const file = await open(this.path, 'r');
    try {
      const header = await readAt(file, entry.localHeaderOffset, 30);
      if (header.readUInt32LE(0) !== LOCAL) throw new ZipError(`${this.path}: ${entry.name} has no local header where it should`);
      return entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    } finally {
      await file.close();
    }
  }
}

async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, position);
  if (bytesRead !== length) throw new ZipError(`unexpected end of file at byte ${position + bytesRead}`);
  return buffer;
}

async function readCentralDirectory(path: string, file: FileHandle): Promise<ZipEntry[]> {
  const size = (await file.stat()).size;
  // The end record is 22 bytes plus a comment of at most 65535.
  const tailLength = Math.min(size, 22 + 0xffff);
  const tail = await readAt(file, size - tailLength, tailLength);
  let at = tail.length - 22;
  while (at >= 0 && tail.readUInt32LE(at) !== EOCD) at--;
  if (at < 0) throw new ZipError(`${path} is not a zip file (no end of central directory record)`);
  const eocdOffset = size - tailLength + at;
  let count = tail.readUInt16LE(at + 10);
  let cdSize = tail.readUInt32LE(at + 12);
  let cdOffset = tail.readUInt32LE(at + 16);
  if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
    const locator = eocdOffset >= 20 ? await readAt(file, eocdOffset - 20, 20) : undefined;
    if (!locator || locator.readUInt32LE(0) !== ZIP64_LOCATOR) throw new ZipError(`${path}: zip64 end record missing`);
    const record = await readAt(file, Number(locator.readBigUInt64LE(8)), 56);
    if (record.readUInt32LE(0) !== ZIP64_EOCD) throw new ZipError(`${path}: zip64 end record missing`);
    count = Number(record.readBigUInt64LE(32));
    cdSize = Number(record.readBigUInt64LE(40));
    cdOffset = Number(record.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > size) throw new ZipError(`${path}: the central directory lies past the end of the file (truncated?)`);
  const cd = await readAt(file, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw new ZipError(`${path}: central directory entry ${i} is damaged`);
    const hostSystem = cd.readUInt8(p + 5);
    const flags = cd.readUInt16LE(p + 8);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const nameBytes = cd.subarray(p + 46, p + 46 + nameLength);
    // Without the UTF-8 flag a name is CP437: plain ASCII is the same in both, the rest refused.
    if ((flags & 0x800) === 0 && nameBytes.some((b) => b >= 0x80)) {
      throw new ZipError(`${path}: entry ${i} has a name that is not UTF-8`);
    }
    const name = nameBytes.toString('utf8');
    const fields = {
      sizeBytes: cd.readUInt32LE(p + 24),
      compressedSizeBytes: cd.readUInt32LE(p + 20),
      localHeaderOffset: cd.readUInt32LE(p + 42),
    };
    readZip64Extra(cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength), fields);
    const method = cd.readUInt16LE(p + 10);
    if (flags & 0x1) throw new ZipError(`${path}: ${name} is encrypted`);
    if (method !== 0 && method !== 8) throw new ZipError(`${path}: ${name} uses compression method ${method} (only stored and deflate)`);
    const unixType = hostSystem === 3 ? (cd.readUInt32LE(p + 38) >>> 16) & 0o170000 : 0;
    entries.push({
      name,
      isDirectory: name.endsWith('/'),
      isSpecial: unixType !== 0 && unixType !== 0o100000 && unixType !== 0o040000,
      method,
      crc32: cd.readUInt32LE(p + 16),
      ...fields,
    });
    p += 46 + nameLength + extraLength + cd.readUInt16LE(p + 32);
  }
  return entries;
}

/** zip64's extra field (id 1) holds, in this order, the fields whose header value is 0xffffffff. */
function readZip64Extra(extra: Buffer, fields: { sizeBytes: number; compressedSizeBytes: number; localHeaderOffset: number }): void {
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(q);
    const length = extra.readUInt16LE(q + 2);
    if (id === 1) {
      let r = q + 4;
      for (const key of ['sizeBytes', 'compressedSizeBytes', 'localHeaderOffset'] as const) {
        if (fields[key] === U32_MAX && r + 8 <= q + 4 + length) {
          fields[key] = Number(extra.readBigUInt64LE(r));
          r += 8;
        }
      }
    }
    q += 4 + length;
  }
}
