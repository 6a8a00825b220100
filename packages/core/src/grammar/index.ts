export {
  GRAMMAR_TOO_COMPLEX,
  GRAMMAR_TYPES,
  GrammarCompiler,
  isGrammarTooComplex,
  type CompiledGrammar,
  type Grammar,
  type JsonSchema,
} from './grammar.js';
