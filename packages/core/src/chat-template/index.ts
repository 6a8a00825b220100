/** Chat templates: reading them from model files and rendering them in a sandbox. */
export {
  normalizeMessages,
  type ChatContentPart,
  type ChatMessage,
  type ChatRole,
  type ChatTool,
  type ChatToolCall,
  type JsonObject,
  type JsonValue,
} from './chat-message.js';
export { ChatTemplateError, type ChatTemplateErrorKind } from './chat-template-error.js';
export {
  chatTemplatesFromGguf,
  chatTemplatesFromTokenizerConfig,
  DEFAULT_VARIANT,
  readChatTemplateFile,
  specialTokenText,
  TOOL_USE_VARIANT,
  type ChatTemplateSource,
  type ChatTemplateVariant,
  type GgufMetadataSource,
} from './chat-template-source.js';
export { ChatTemplate, MAX_TEMPLATE_CHARS, type ChatTemplateOptions, type ChatTemplateRenderInput } from './chat-template.js';
export {
  DEFAULT_RENDER_LIMITS,
  defaultRenderSandbox,
  defaultRenderWorkers,
  RenderSandbox,
  type RenderLimits,
  type RenderSandboxOptions,
  type SandboxJob,
} from './render-sandbox.js';
export { strftime } from './strftime.js';
export {
  isNeutralTemplateArgument,
  MAX_TEMPLATE_ARGUMENT_CHARS,
  TEMPLATE_ARGUMENTS,
  templateArgumentProblem,
  templateReadsVariable,
  type TemplateArgumentRule,
} from './template-arguments.js';
