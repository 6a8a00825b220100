export {
  detectToolCallFormat,
  type ParsedToolCall,
  type ToolCallFormat,
  type ToolCallFormatName,
} from './tool-call-format.js';
export { planToolChat, ToolCallStream, type ToolChatOptions, type ToolChatPlan, type ToolChoice } from './tool-chat.js';
