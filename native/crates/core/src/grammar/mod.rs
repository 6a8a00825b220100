//! Constrained decoding with llguidance: a grammar (JSON Schema, regex, Lark, or llguidance's
//! own JSON format) becomes a token mask per step, applied to the logits before sampling.
//! After each sampled token the grammar may force the next bytes outright; those tokens are
//! returned so the engine feeds them in one step instead of sampling them one at a time.
//!
//! One [`GrammarCompiler`] per tokenizer (the vocabulary trie is built once); one
//! [`Constraint`] per request, compiled when the request arrives so that a malformed or
//! unsatisfiable grammar is refused before it queues. What a compile may cost is bounded
//! (`budget.rs`): a grammar past the bounds is refused with a message starting with
//! [`TOO_COMPLEX`].

mod budget;
mod tok_env;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use toktrie::TokEnv;

use crate::model_error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
pub use budget::{
    COMPILE_STACK_BYTES, INITIAL_LEXER_FUEL, MAX_GRAMMAR_BYTES, MAX_GRAMMAR_NESTING,
    MAX_GRAMMAR_SYMBOLS, MAX_JSON_NODES, MAX_LARK_TERMINALS, MAX_OBJECT_PROPERTIES, TOO_COMPLEX,
};
pub use tok_env::TokenizerTokEnv;

/// The grammar languages a request may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrammarKind {
    /// A JSON Schema (draft 2020-12 subset, `$ref`, `anyOf`, …).
    JsonSchema,
    /// Any JSON object (`response_format: json_object`); the value is ignored.
    JsonObject,
    /// A regular expression (Rust `regex` syntax) the whole output must match.
    Regex,
    /// llguidance's Lark dialect (may embed `%json {…}` and `/regex/`).
    Lark,
    /// llguidance's JSON grammar list, or Lark text.
    Llguidance,
}

impl GrammarKind {
    pub fn parse(name: &str) -> Result<GrammarKind> {
        Ok(match name {
            "json_schema" | "json" => GrammarKind::JsonSchema,
            "json_object" => GrammarKind::JsonObject,
            "regex" => GrammarKind::Regex,
            "lark" => GrammarKind::Lark,
            "llguidance" => GrammarKind::Llguidance,
            other => {
                return Err(invalid(format!(
                    "unknown grammar type '{other}' (expected json_schema, json_object, regex, lark or llguidance)"
                )))
            }
        })
    }
}

fn invalid(message: String) -> ModelError {
    ModelError::InvalidInput(message)
}

/// Separators a model writes anyway, and no free whitespace: a small model left free to
/// add blanks between JSON tokens can fill its whole budget with them.
fn with_compact_layout(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

fn top_level_grammar(kind: GrammarKind, value: &str) -> Result<TopLevelGrammar> {
    budget::check_text(kind, value)?;
    Ok(match kind {
        GrammarKind::JsonSchema => {
            let schema: Value = serde_json::from_str(value).map_err(|e| {
                if e.to_string().starts_with("recursion limit exceeded") {
                    budget::too_complex(format!(
                        "the JSON schema nests deeper than serde_json's limit of 128 ({e})"
                    ))
                } else {
                    invalid(format!("the JSON schema is not valid JSON: {e}"))
                }
            })?;
            match schema {
                Value::Object(_) | Value::Bool(_) => {}
                _ => {
                    return Err(invalid(
                        "a JSON schema must be an object or a boolean".into(),
                    ))
                }
            }
            budget::check_json(&schema)?;
            TopLevelGrammar::from_json_schema(with_compact_layout(schema))
        }
        GrammarKind::JsonObject => TopLevelGrammar::from_json_schema(with_compact_layout(
            serde_json::json!({"type": "object"}),
        )),
        GrammarKind::Regex => TopLevelGrammar::from_regex(value),
        GrammarKind::Lark => TopLevelGrammar::from_lark(value.to_string()),
        GrammarKind::Llguidance => {
            if let Ok(list) = serde_json::from_str::<Value>(value) {
                budget::check_json(&list)?;
            }
            TopLevelGrammar::from_lark_or_grammar_list(value)
                .map_err(|e| invalid(format!("the llguidance grammar is malformed: {e}")))?
        }
    })
}

/// Compiles grammars against one tokenizer's vocabulary.
pub struct GrammarCompiler {
    factory: ParserFactory,
}

impl GrammarCompiler {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<GrammarCompiler> {
        let env: TokEnv = Arc::new(TokenizerTokEnv::new(tokenizer));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
            ModelError::Unsupported(format!("grammar support for this vocabulary: {e}"))
        })?;
        // Errors reach the caller as values, without the parser's state; nothing is printed.
        factory.quiet();
        let limits = factory.limits_mut();
        limits.verbose_errors = false;
        limits.max_grammar_size = MAX_GRAMMAR_SYMBOLS;
        limits.initial_lexer_fuel = budget::INITIAL_LEXER_FUEL;
        Ok(GrammarCompiler { factory })
    }

    pub fn vocab_size(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    /// A constraint ready to start, or an error naming what is wrong with the grammar: a
    /// syntax error, an unsatisfiable schema, a grammar that admits no first token, or (with
    /// [`TOO_COMPLEX`]) one past the compile budget. Runs on a thread of its own (see
    /// `budget.rs`), so no grammar can exhaust the caller's stack.
    pub fn compile(&self, kind: GrammarKind, value: &str) -> Result<Constraint> {
        budget::on_compile_stack(|| self.compile_here(kind, value))
    }

    fn compile_here(&self, kind: GrammarKind, value: &str) -> Result<Constraint> {
        let grammar = top_level_grammar(kind, value)?;
        let refused = |error: &str| {
            let error = one_line(error);
            if budget::is_limit_error(&error) {
                budget::too_complex(format!("the {} grammar: {error}", kind_name(kind)))
            } else {
                invalid(format!("invalid {} grammar: {error}", kind_name(kind)))
            }
        };
        let mut matcher = Matcher::new(self.factory.create_parser(grammar));
        if let Some(error) = matcher.get_error() {
            return Err(refused(&error));
        }
        let mask = matcher
            .compute_mask()
            .map_err(|e| refused(&e.to_string()))?;
        if mask.is_zero() {
            return Err(invalid(format!(
                "the {} grammar admits no output",
                kind_name(kind)
            )));
        }
        Ok(Constraint { matcher })
    }
}

fn kind_name(kind: GrammarKind) -> &'static str {
    match kind {
        GrammarKind::JsonSchema => "JSON schema",
        GrammarKind::JsonObject => "JSON object",
        GrammarKind::Regex => "regex",
        GrammarKind::Lark => "Lark",
        GrammarKind::Llguidance => "llguidance",
    }
}

/// A message on one line (regex errors point at the column over several), at most 400 chars,
/// without the backtrace llguidance appends to a panic it caught.
fn one_line(message: &str) -> String {
    let message = message.split("<backtrace>").next().unwrap_or(message);
    let joined = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.char_indices().nth(400) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// A failure of a step of constrained generation; one of llguidance's per-step limits (lexer
/// fuel, Earley items) is told apart as [`TOO_COMPLEX`].
fn step_error(message: &str) -> ModelError {
    let message = one_line(message);
    if budget::is_limit_error(&message) {
        budget::too_complex(message)
    } else {
        invalid(format!("grammar: {message}"))
    }
}

/// A compiled grammar and how far a sequence has got through it.
pub struct Constraint {
    matcher: Matcher,
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Constraint {
            matcher: self.matcher.deep_clone(),
        }
    }
}

impl Constraint {
    /// A copy that has already read `tokens` (a sequence restarted after preemption).
    pub fn resumed(&self, tokens: &[u32]) -> Result<Constraint> {
        let mut c = self.clone();
        c.matcher
            .consume_tokens(tokens)
            .map_err(|e| invalid(format!("the grammar rejects the generated tokens: {e}")))?;
        Ok(c)
    }

    /// Sets the logits of tokens the grammar does not allow next to −∞ (once the grammar is
    /// complete, only the end tokens remain). An error when nothing is allowed.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| step_error(&e.to_string()))?;
        if mask.is_zero() {
            return Err(invalid("the grammar allows no further token".into()));
        }
        let words = mask.as_slice();
        for (w, chunk) in logits.chunks_mut(32).enumerate() {
            let bits = words.get(w).copied().unwrap_or(0);
            if bits == u32::MAX {
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if bits & (1 << b) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    /// Advances past a sampled token; returns the tokens the grammar forces next (already
    /// read by the grammar), to be fed with it. End tokens end the grammar.
    pub fn accept(&mut self, token: u32) -> Result<Vec<u32>> {
        if self.matcher.is_stopped() {
            return Ok(Vec::new());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| step_error(&e.to_string()))?;
        if self.matcher.is_stopped() {
            return Ok(Vec::new());
        }
        Ok(self.matcher.consume_ff_tokens())
    }
}
