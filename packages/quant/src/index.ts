export { MistralrsError, type MistralrsErrorCode } from '@mistralrs/napi-support';
export {
  dequantize,
  ggmlType,
  ggmlTypes,
  quantize,
  type GgmlTypeInfo,
  type GgmlTypeName,
} from './formats.js';
export { GgufFile, writeGguf, type GgufContents, type GgufTensorData, type GgufTensorInfo } from './gguf.js';
export {
  isGgufArray,
  type GgufArray,
  type GgufMetadataEntry,
  type GgufScalar,
  type GgufValue,
  type GgufValueType,
} from './gguf-value.js';
export {
  SafetensorsFile,
  writeSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensorData,
  type SafetensorsTensorInfo,
} from './safetensors.js';
