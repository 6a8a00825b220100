import { callNative, callNativeSync, MistralrsError } from '@mistralrs/napi-support';
import { binding, type Binding } from './native.js';

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I8'
  | 'U8'
  | 'I16'
  | 'U16'
  | 'I32'
  | 'U32'
  | 'I64'
  | 'U64'
  | 'BOOL';

export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  /** Row-major (PyTorch order): the last dimension is contiguous. */
  shape: number[];
  /** `[begin, end)` from the start of the data section of its file. */
  dataOffsets: [number, number];
  sizeBytes: number;
  /** The file (shard) holding it. */
  file: string;
}

interface WireHeader {
  files: Array<{ path: string; metadata: Record<string, string>; tensors: Omit<SafetensorsTensorInfo, 'file'>[] }>;
}

/**
 * A safetensors file, or a model folder of shards (`model.safetensors.index.json`) seen as one
 * set of tensors. Data stays memory-mapped natively and is copied into JavaScript on request.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly files: readonly string[];
  /** `__metadata__` of every file, merged (shards usually agree). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: readonly SafetensorsTensorInfo[];
  readonly #byName: Map<string, SafetensorsTensorInfo>;

  private constructor(
    private readonly handle: Binding.SafetensorsHandle,
    path: string,
    header: WireHeader,
  ) {
    this.path = path;
    this.files = header.files.map((f) => f.path);
    this.metadata = Object.assign({}, ...header.files.map((f) => f.metadata));
    this.tensors = header.files.flatMap((f) => f.tensors.map((t) => ({ ...t, file: f.path })));
    this.#byName = new Map(this.tensors.map((t) => [t.name, t]));
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await callNative(() => binding.openSafetensors(path));
    const header = JSON.parse(callNativeSync(() => handle.headerJson())) as WireHeader;
    return new SafetensorsFile(handle, path, header);
  }

  tensor(name: string): SafetensorsTensorInfo | undefined {
    return this.#byName.get(name);
  }

  tensorBytes(name: string): Promise<Uint8Array> {
    return callNative(() => this.handle.tensorBytes(name)) as Promise<Uint8Array>;
  }

  /** The tensor as f32 (from F32, F16, BF16, F64, F8_E4M3 or F8_E5M2). */
  async toFloat32(name: string): Promise<Float32Array> {
    if (!this.#byName.has(name)) {
      throw new MistralrsError('InvalidArgumentError', `${this.path}: no tensor named ${JSON.stringify(name)}`);
    }
    return callNative(() => this.handle.tensorF32(name)) as Promise<Float32Array>;
  }

  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export interface SafetensorsTensorData {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

/** Writes one safetensors file (header padded to 8 bytes, tensors in the order given). */
export function writeSafetensors(path: string, tensors: SafetensorsTensorData[], metadata?: Record<string, string>): Promise<void> {
  return callNative(() => binding.writeSafetensors(path, tensors, metadata));
}
