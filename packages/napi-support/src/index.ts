export { callNative, callNativeSync, fromNativeError, MistralrsError, type MistralrsErrorCode } from './native-error.js';
