export { GRAMMAR_TYPES, GrammarCompiler, type CompiledGrammar, type Grammar, type JsonSchema } from './grammar.js';
