//! What one grammar compile may cost, checked before llguidance sees the grammar.
//!
//! llguidance resolves rules, terminals and schemas by recursion: each Lark rule or terminal
//! that refers to the next, each schema that nests or `$ref`s another, each group nested in
//! a rule, costs 1.7 to 9 KiB of stack (measured on this build: a chain of ~2,800 Lark rules,
//! or of ~900 `$defs` objects, overflowed the 8 MiB of a worker thread and took the process
//! down). Some of its passes also grow faster than the grammar (an object's optional
//! properties are quadratic: 8,000 of them took 8.7 s).
//!
//! So a grammar is measured first, cheaply and without recursion, against the bounds below,
//! and compiled on a thread of its own whose stack holds the deepest grammar those bounds
//! allow several times over. A grammar past a bound, or past one of llguidance's own limits
//! (lexer fuel, grammar symbols, Earley items), is refused with a message that starts with
//! [`TOO_COMPLEX`]; callers tell it from a malformed grammar by that prefix.

use std::thread;

use serde_json::Value;

use super::GrammarKind;
use crate::model_error::{ModelError, Result};

/// The start of every message refusing a grammar for its size rather than its content.
pub const TOO_COMPLEX: &str = "grammar too complex: ";

/// Longest grammar text (a schema's JSON, Lark, a regex), in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;
/// Most JSON objects and arrays in a schema (each may become a level of recursion).
pub const MAX_JSON_NODES: usize = 10_000;
/// Most `properties` of one schema object (llguidance's optional-property sequence is
/// quadratic in them: 1,000 compile in about 0.15 s).
pub const MAX_OBJECT_PROPERTIES: usize = 1_000;
/// Most Lark (or llguidance) definitions and groups: lines plus opening brackets, an upper
/// bound on how deep its rule and terminal references and groups can nest.
pub const MAX_GRAMMAR_NESTING: usize = 10_000;
/// Most string and regex terminals of a Lark grammar, counted as quotes and slashes over two
/// (llguidance adds each lexeme with a scan of those before it: 20,000 took 2.6 s).
pub const MAX_LARK_TERMINALS: usize = 5_000;
/// Fuel for building the lexer (llguidance's default is 1,000,000, about 3 s for a regex such
/// as `((a{1000}){1000}){1000}` on a busy 2-core machine).
pub const INITIAL_LEXER_FUEL: u64 = 250_000;
/// Grammar symbols llguidance may build (its default, 500,000, passes its own `u16` symbol
/// table and ends in a panic; a Lark alternation of 100,000 strings took 18 s to get there).
pub const MAX_GRAMMAR_SYMBOLS: usize = 50_000;
/// The compile thread's stack. The deepest grammar the bounds allow needs about 45 MiB
/// (10,000 levels at the 3.8 KiB measured per schema object, or 4.3 KiB per Lark definition);
/// the rest is room for paths not measured. Only the pages a compile touches are committed.
pub const COMPILE_STACK_BYTES: usize = 256 << 20;

pub(super) fn too_complex(detail: String) -> ModelError {
    ModelError::InvalidInput(format!("{TOO_COMPLEX}{detail}"))
}

/// Whether an llguidance error is one of its effort limits rather than a fault of the grammar.
pub(super) fn is_limit_error(message: &str) -> bool {
    const MARKERS: [&str; 8] = [
        "(limit for this grammar",
        "schema too large",
        "stack level exceeded",
        "fuel exhausted",
        "fuel",
        "Too many items",
        "Current row has",
        "lexer precomputation failed",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

/// Size and nesting of a grammar given as text (Lark, llguidance, regex, or a schema's JSON
/// before it is parsed).
pub(super) fn check_text(kind: GrammarKind, text: &str) -> Result<()> {
    if text.len() > MAX_GRAMMAR_BYTES {
        return Err(too_complex(format!(
            "the grammar is {} bytes long; at most {MAX_GRAMMAR_BYTES} are allowed",
            text.len()
        )));
    }
    if matches!(kind, GrammarKind::Lark | GrammarKind::Llguidance) {
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        let groups = text
            .bytes()
            .filter(|b| matches!(b, b'(' | b'[' | b'{'))
            .count();
        if lines + groups > MAX_GRAMMAR_NESTING {
            return Err(too_complex(format!(
                "the grammar has {lines} lines and {groups} opening brackets; at most {MAX_GRAMMAR_NESTING} together are allowed"
            )));
        }
        let delimiters = text.bytes().filter(|&b| b == b'"' || b == b'/').count();
        if kind == GrammarKind::Lark && delimiters / 2 > MAX_LARK_TERMINALS {
            return Err(too_complex(format!(
                "the grammar has about {} string and regex terminals; at most {MAX_LARK_TERMINALS} are allowed",
                delimiters / 2
            )));
        }
    }
    Ok(())
}

/// Objects and arrays of a parsed schema, and the properties of each object, counted with an
/// explicit stack (the value itself may be as deep as serde_json allows).
pub(super) fn check_json(schema: &Value) -> Result<()> {
    let mut nodes = 0usize;
    let mut stack: Vec<(&Value, bool)> = vec![(schema, false)];
    while let Some((value, is_properties)) = stack.pop() {
        match value {
            Value::Object(map) => {
                nodes += 1;
                if is_properties && map.len() > MAX_OBJECT_PROPERTIES {
                    return Err(too_complex(format!(
                        "a schema object has {} properties; at most {MAX_OBJECT_PROPERTIES} are allowed",
                        map.len()
                    )));
                }
                stack.extend(map.iter().map(|(k, v)| (v, k == "properties")));
            }
            Value::Array(items) => {
                nodes += 1;
                stack.extend(items.iter().map(|v| (v, false)));
            }
            _ => {}
        }
        if nodes > MAX_JSON_NODES {
            return Err(too_complex(format!(
                "the schema has more than {MAX_JSON_NODES} objects and arrays"
            )));
        }
    }
    Ok(())
}

/// Runs `compile` on a thread with [`COMPILE_STACK_BYTES`] of stack, and waits for it.
pub(super) fn on_compile_stack<T: Send>(compile: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("grammar-compile".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn_scoped(scope, compile)
            .map_err(|e| {
                ModelError::Unsupported(format!("cannot start the grammar compile thread: {e}"))
            })?;
        handle.join().unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ModelError::InvalidInput(format!(
                "the grammar compiler failed: {what}"
            )))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lark_lines_and_brackets() {
        let ok = "start: a\n".repeat(MAX_GRAMMAR_NESTING / 2);
        assert!(check_text(GrammarKind::Lark, &ok).is_ok());
        let deep = format!(
            "start: {}\"a\"{}",
            "(".repeat(MAX_GRAMMAR_NESTING),
            ")".repeat(MAX_GRAMMAR_NESTING)
        );
        let err = check_text(GrammarKind::Lark, &deep)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(TOO_COMPLEX), "{err}");
        // A regex's nesting is bounded by its parser (250 levels); only its length counts here.
        assert!(check_text(GrammarKind::Regex, &deep).is_ok());
        let long = "a".repeat(MAX_GRAMMAR_BYTES + 1);
        assert!(check_text(GrammarKind::Regex, &long).is_err());
    }

    #[test]
    fn counts_schema_nodes_and_properties() {
        let props: serde_json::Map<String, Value> = (0..=MAX_OBJECT_PROPERTIES)
            .map(|i| (format!("p{i}"), serde_json::json!({"type": "integer"})))
            .collect();
        let wide = serde_json::json!({"type": "object", "properties": props});
        let err = check_json(&wide).unwrap_err().to_string();
        assert!(err.contains("properties"), "{err}");
        // A property *named* "properties" is not a properties map.
        let named =
            serde_json::json!({"type": "object", "properties": {"properties": {"type": "string"}}});
        assert!(check_json(&named).is_ok());

        let defs: serde_json::Map<String, Value> = (0..MAX_JSON_NODES)
            .map(|i| {
                (
                    format!("d{i}"),
                    serde_json::json!({"$ref": format!("#/$defs/d{}", i + 1)}),
                )
            })
            .collect();
        let chain = serde_json::json!({"$ref": "#/$defs/d0", "$defs": defs});
        assert!(check_json(&chain)
            .unwrap_err()
            .to_string()
            .starts_with(TOO_COMPLEX));
    }

    #[test]
    fn limit_errors_are_told_from_grammar_errors() {
        assert!(is_limit_error(
            "grammar size (number of symbols) too big (limit for this grammar: 50000)"
        ));
        assert!(is_limit_error("schema too large"));
        assert!(!is_limit_error("rule \"x\" not found"));
    }
}
