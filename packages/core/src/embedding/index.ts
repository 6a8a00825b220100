export {
  EmbeddingModel,
  type EmbeddingInput,
  type EmbeddingModelInfo,
  type EmbeddingModelOptions,
  type EmbeddingResult,
  type EmbedOptions,
} from './embedding-model.js';
export { readPrompts, type SentenceTransformerPrompts } from './prompts.js';
