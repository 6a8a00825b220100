//! Hostile grammars against the compile budget: the deepest references and nestings the
//! bounds allow compile on the compile thread's stack (each of these overflowed the 8 MiB of
//! a worker thread and killed the process before), and grammars past a bound, or past one of
//! llguidance's limits, are refused with a `grammar too complex` message instead of taking
//! seconds to minutes. Uses the Llama 3 vocabulary of `../shared/fixtures/vocab`.

mod common;

use std::sync::Arc;

use mistralrs_core::grammar::{
    GrammarCompiler, GrammarKind, MAX_GRAMMAR_BYTES, MAX_GRAMMAR_NESTING, MAX_LARK_TERMINALS,
    MAX_OBJECT_PROPERTIES, TOO_COMPLEX,
};
use mistralrs_core::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

fn compiler() -> Option<GrammarCompiler> {
    let dir = common::vocab_dir()?;
    let tok = Tokenizer::from_gguf_path(&dir.join("ggml-vocab-llama-bpe.gguf")).expect("vocab");
    Some(GrammarCompiler::new(Arc::new(tok)).expect("compiler"))
}

/// `n` lines `{prefix}{i}: {body(i)}`, the last one ending the chain with `"a"`.
fn lark_chain(start: &str, n: usize, body: impl Fn(usize) -> String) -> String {
    let mut text = format!("start: {start}0\n");
    for i in 0..n {
        text.push_str(&format!("{start}{i}: {}\n", body(i)));
    }
    text.push_str(&format!("{start}{n}: \"a\"\n"));
    text
}

/// `$defs` d0 … dn, each `link(next)`, the last a string: a chain of references.
fn schema_chain(n: usize, link: impl Fn(String) -> Value) -> String {
    let mut defs = Map::new();
    for i in 0..n {
        defs.insert(format!("d{i}"), link(format!("#/$defs/d{}", i + 1)));
    }
    defs.insert(format!("d{n}"), json!({"type": "string"}));
    json!({"$ref": "#/$defs/d0", "$defs": defs}).to_string()
}

fn too_complex(compiler: &GrammarCompiler, kind: GrammarKind, text: &str) -> String {
    let message = match compiler.compile(kind, text) {
        Ok(_) => panic!("a grammar of {} bytes compiled", text.len()),
        Err(e) => e.to_string(),
    };
    assert!(message.starts_with(TOO_COMPLEX), "{message}");
    message
}

#[test]
fn the_deepest_grammars_within_the_bounds_compile() {
    let Some(compiler) = compiler() else { return };
    let lines = MAX_GRAMMAR_NESTING - 10;
    let deep = [
        // Rules and terminals that each name the next (~2,800 and ~3,400 of them overflowed).
        lark_chain("r", lines, |i| format!("r{}", i + 1)),
        lark_chain("T", lines, |i| format!("T{}", i + 1)),
        // Groups nested inside each link as well (~160 links of 28 groups overflowed).
        lark_chain("r", MAX_GRAMMAR_NESTING / 30, |i| {
            format!("{}\"x\" | r{}{}", "(".repeat(28), i + 1, ")".repeat(28))
        }),
    ];
    for text in deep {
        compiler
            .compile(GrammarKind::Lark, &text)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Objects whose one property is the next (~900 overflowed); as many as the length allows.
    let link = |next: String| json!({"type": "object", "properties": {"x": {"$ref": next}}});
    let per_link = schema_chain(1, link).len();
    let schema = schema_chain(MAX_GRAMMAR_BYTES / per_link, link);
    assert!(schema.len() <= MAX_GRAMMAR_BYTES);
    compiler
        .compile(GrammarKind::JsonSchema, &schema)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn grammars_past_a_bound_are_refused_as_too_complex() {
    let Some(compiler) = compiler() else { return };
    let rules = lark_chain("r", MAX_GRAMMAR_NESTING, |i| format!("r{}", i + 1));
    too_complex(&compiler, GrammarKind::Lark, &rules);

    // 20,000 alternatives took 2.6 s (llguidance adds each terminal after a scan of the others).
    let alternatives: Vec<String> = (0..=MAX_LARK_TERMINALS)
        .map(|i| format!("\"a{i}\""))
        .collect();
    let message = too_complex(
        &compiler,
        GrammarKind::Lark,
        &format!("start: {}", alternatives.join(" | ")),
    );
    assert!(message.contains("terminals"), "{message}");

    // 8,000 optional properties took 8.7 s (quadratic in them).
    let props: Map<String, Value> = (0..=MAX_OBJECT_PROPERTIES)
        .map(|i| (format!("p{i}"), json!({"type": "integer"})))
        .collect();
    let wide = json!({"type": "object", "properties": props}).to_string();
    assert!(too_complex(&compiler, GrammarKind::JsonSchema, &wide).contains("properties"));

    let long = schema_chain(20_000, |next| json!({"$ref": next}));
    assert!(too_complex(&compiler, GrammarKind::JsonSchema, &long).contains("bytes"));

    // Deeper than serde_json parses.
    let nested = format!("{}{{}}{}", "{\"not\": ".repeat(200), "}".repeat(200));
    too_complex(&compiler, GrammarKind::JsonSchema, &nested);

    // Past llguidance's own limits: a terminal that doubles 40 times (its lexer fuel).
    let doubling = format!(
        "start: T40\nT0: \"a\" | \"b\"\n{}",
        (0..40)
            .map(|i| format!("T{}: T{i} T{i}\n", i + 1))
            .collect::<String>()
    );
    let message = too_complex(&compiler, GrammarKind::Lark, &doubling);
    assert!(message.contains("limit"), "{message}");
}

#[test]
fn a_malformed_grammar_is_not_called_too_complex() {
    let Some(compiler) = compiler() else { return };
    for (kind, text) in [
        (GrammarKind::Lark, "start: missing"),
        (GrammarKind::Regex, "(a"),
        (GrammarKind::JsonSchema, r#"{"type": "frob"}"#),
    ] {
        let message = compiler
            .compile(kind, text)
            .err()
            .expect("refused")
            .to_string();
        assert!(!message.starts_with(TOO_COMPLEX), "{message}");
    }
}
