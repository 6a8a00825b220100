import { callNative, callNativeSync, MistralrsError } from '@mistralrs/napi-support';
import type { GgmlTypeName } from './formats.js';
import { fromWire, isGgufArray, toWire, type GgufMetadataEntry, type GgufValue, type GgufValueType } from './gguf-value.js';
import { binding, type Binding } from './native.js';

export interface GgufTensorInfo {
  name: string;
  /** ggml order: `dims[0]` is the row length (the contiguous dimension). */
  dims: number[];
  type: GgmlTypeName;
  /** Byte offset from the start of the data section. */
  offset: number;
  nElements: number;
  sizeBytes: number;
}

interface WireHeader {
  path: string;
  version: number;
  alignment: number;
  dataOffset: number;
  fileSize: number;
  metadata: Array<{ key: string; type: GgufValueType; value: never }>;
  tensors: GgufTensorInfo[];
}

/**
 * An open GGUF file. The header is parsed and validated natively; tensor data stays
 * memory-mapped in the native layer and is only copied into JavaScript on request.
 */
export class GgufFile {
  readonly path: string;
  readonly version: number;
  readonly alignment: number;
  readonly dataOffset: number;
  readonly sizeBytes: number;
  /** Metadata in file order, with types. */
  readonly metadata: readonly GgufMetadataEntry[];
  readonly tensors: readonly GgufTensorInfo[];
  readonly #byKey: Map<string, GgufMetadataEntry>;
  readonly #byName: Map<string, GgufTensorInfo>;

  private constructor(
    private readonly handle: Binding.GgufHandle,
    header: WireHeader,
  ) {
    this.path = header.path;
    this.version = header.version;
    this.alignment = header.alignment;
    this.dataOffset = header.dataOffset;
    this.sizeBytes = header.fileSize;
    this.metadata = header.metadata.map((e) => ({ key: e.key, type: e.type, value: fromWire(e.type, e.value) }));
    this.tensors = header.tensors;
    this.#byKey = new Map(this.metadata.map((e) => [e.key, e]));
    this.#byName = new Map(this.tensors.map((t) => [t.name, t]));
  }

  /** Opens and validates `path`; rejects with a `MistralrsError` naming the file and the problem. */
  static async open(path: string): Promise<GgufFile> {
    const handle = await callNative(() => binding.openGguf(path));
    const header = JSON.parse(callNativeSync(() => handle.headerJson())) as WireHeader;
    return new GgufFile(handle, header);
  }

  get(key: string): GgufValue | undefined {
    return this.#byKey.get(key)?.value;
  }

  /** The value of `key` if it is a string. */
  getString(key: string): string | undefined {
    const value = this.get(key);
    return typeof value === 'string' ? value : undefined;
  }

  /** The value of `key` if it is a number (64-bit integers converted when exact). */
  getNumber(key: string): number | undefined {
    const value = this.get(key);
    if (typeof value === 'number') return value;
    if (typeof value === 'bigint' && BigInt(Number(value)) === value) return Number(value);
    return undefined;
  }

  /** The items of `key` if it is an array. */
  getArray(key: string): GgufValue[] | undefined {
    const value = this.get(key);
    return isGgufArray(value) ? value.items : undefined;
  }

  /** `general.architecture`, the key prefix of the model's hyperparameters. */
  get architecture(): string | undefined {
    return this.getString('general.architecture');
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.#byName.get(name);
  }

  /** A copy of the tensor's raw bytes. */
  tensorBytes(name: string): Promise<Uint8Array> {
    return callNative(() => this.handle.tensorBytes(name)) as Promise<Uint8Array>;
  }

  /** The tensor dequantized to f32, in ggml order. */
  async dequantize(name: string): Promise<Float32Array> {
    if (!this.#byName.has(name)) {
      throw new MistralrsError('InvalidArgumentError', `${this.path}: no tensor named ${JSON.stringify(name)}`);
    }
    return callNative(() => this.handle.dequantizeTensor(name)) as Promise<Float32Array>;
  }

  /** Unmaps the file now (otherwise it happens when the object is collected). */
  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export interface GgufTensorData {
  name: string;
  /** ggml order: `dims[0]` is the row length. */
  dims: number[];
  type: GgmlTypeName;
  /** Exactly the bytes that the tensor's elements take in `type` (see `quantize`). */
  data: Uint8Array;
}

export interface GgufContents {
  /** Written in this order; `general.alignment` (u32) sets the data alignment. */
  metadata: GgufMetadataEntry[];
  tensors: GgufTensorData[];
}

/** Writes a GGUF v3 file (to a temporary name, then renamed into place). */
export function writeGguf(path: string, contents: GgufContents): Promise<void> {
  const metadata = JSON.stringify(contents.metadata.map((e) => ({ key: e.key, type: e.type, value: toWire(e.type, e.value) })));
  return callNative(() => binding.writeGguf(path, metadata, contents.tensors));
}
