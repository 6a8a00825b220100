export { MistralrsError, type MistralrsErrorCode } from './errors.js';
export {
  dequantize,
  ggmlType,
  ggmlTypes,
  quantize,
  type GgmlTypeInfo,
  type GgmlTypeName,
} from './formats.js';
