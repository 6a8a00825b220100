import { callNative, callNativeSync } from '@mistralrs/napi-support';
import { binding } from './native.js';

/** A ggml tensor type name, e.g. `"Q4_K"`. */
export type GgmlTypeName =
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'Q4_0'
  | 'Q4_1'
  | 'Q5_0'
  | 'Q5_1'
  | 'Q8_0'
  | 'Q8_1'
  | 'Q2_K'
  | 'Q3_K'
  | 'Q4_K'
  | 'Q5_K'
  | 'Q6_K'
  | 'Q8_K'
  | 'IQ4_NL'
  | 'IQ4_XS'
  | 'IQ2_XXS'
  | 'IQ2_XS'
  | 'IQ3_XXS'
  | 'IQ1_S'
  | 'IQ3_S'
  | 'IQ2_S'
  | 'IQ1_M'
  | 'I8'
  | 'I16'
  | 'I32'
  | 'I64'
  | 'F64'
  | 'TQ1_0'
  | 'TQ2_0'
  | 'MXFP4';

export interface GgmlTypeInfo {
  name: GgmlTypeName;
  id: number;
  /** Elements per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /** Whether this build can dequantize the type and multiply with it. */
  supported: boolean;
  /** Whether this build can quantize into the type. */
  quantizable: boolean;
}

let typeTable: Map<string, GgmlTypeInfo> | undefined;

/** Every ggml tensor type with its geometry and what this build can do with it. */
export function ggmlTypes(): GgmlTypeInfo[] {
  return [...table().values()];
}

/** The type named `name` (case-insensitive), or undefined. */
export function ggmlType(name: string): GgmlTypeInfo | undefined {
  return table().get(name.toUpperCase());
}

function table(): Map<string, GgmlTypeInfo> {
  typeTable ??= new Map(callNativeSync(() => binding.ggmlTypes()).map((t) => [t.name, t as GgmlTypeInfo]));
  return typeTable;
}

/** Dequantizes whole blocks of `type` to f32, off the JavaScript thread. */
export function dequantize(type: GgmlTypeName, data: Uint8Array): Promise<Float32Array> {
  return callNative(() => binding.dequantize(type, data));
}

/** Quantizes `values` (a whole number of blocks of `type`) off the JavaScript thread. */
export function quantize(type: GgmlTypeName, values: Float32Array): Promise<Uint8Array> {
  return callNative(() => binding.quantize(type, values));
}
