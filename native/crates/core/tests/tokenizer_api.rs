//! The API on real vocabularies from `../shared/fixtures/vocab`: special tokens, BOS/EOS,
//! end-of-generation ids, pieces and streaming. A missing fixture fails
//! the test (see `mistralrs_common::test_support`).

mod common;

use std::sync::Arc;

use mistralrs_core::tokenizer::{DecodeStream, TokenType, Tokenizer};

fn load(name: &str) -> Option<Tokenizer> {
    let dir = common::vocab_dir()?;
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    Some(Tokenizer::from_gguf_path(&path).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn stream_all(tok: &Arc<Tokenizer>, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut stream = DecodeStream::new(tok.clone(), skip_special);
    let mut chunks: Vec<String> = ids
        .iter()
        .filter_map(|&id| stream.push(id).unwrap())
        .collect();
    chunks.extend(Some(stream.flush().unwrap()).filter(|s| !s.is_empty()));
    chunks
}

#[test]
fn llama3_special_tokens_and_bos() {
    let Some(tok) = load("llama-bpe") else { return };
    assert_eq!(tok.bos_id(), Some(128000));
    assert!(
        tok.add_bos() && !tok.add_eos(),
        "llama.cpp adds BOS for llama3 vocabularies"
    );
    let eog = tok.eos_ids();
    assert!(eog.contains(&128001) && eog.contains(&128009), "{eog:?}"); // end_of_text, eot_id
    let text = "<|start_header_id|>user<|end_header_id|>";
    let parsed = tok.encode(text, true, true).unwrap();
    assert_eq!(parsed[..2], [128000, 128006]);
    assert_eq!(parsed.last(), Some(&128007));
    let literal = tok.encode(text, false, false).unwrap();
    assert!(literal.iter().all(|&id| id < 128000), "{literal:?}");
    assert_eq!(tok.decode(&literal, false).unwrap(), text);
    assert_eq!(tok.decode(&parsed, true).unwrap(), "user");
    assert_eq!(tok.token_type(128009).unwrap(), TokenType::Control);
    assert_eq!(tok.token_text(128009).unwrap(), "<|eot_id|>");
    let world = tok.encode(" world", false, false).unwrap();
    assert_eq!(world.len(), 1);
    assert_eq!(tok.token_to_piece(world[0]).unwrap(), b" world");
    assert_eq!(tok.token_text(world[0]).unwrap(), "\u{120}world");
}

#[test]
fn spm_stream_emoji_and_leading_space() {
    let Some(tok) = load("llama-spm") else { return };
    let tok = Arc::new(tok);
    // " this is 🦙.cpp" from the vectors: the llama is four byte tokens.
    let ids = [29871, 445, 338, 29871, 243, 162, 169, 156, 29889, 8223];
    let chunks = stream_all(&tok, &ids, false);
    assert!(chunks.iter().all(|c| !c.contains('\u{fffd}')), "{chunks:?}");
    assert_eq!(chunks.concat(), " this is 🦙.cpp");
    assert!(chunks.contains(&"🦙".to_string()), "{chunks:?}");

    let with_bos = tok.encode("Hello world", true, false).unwrap();
    assert_eq!(with_bos, [1, 15043, 3186]);
    assert_eq!(stream_all(&tok, &with_bos, true), ["Hello", " world"]);
    assert_eq!(tok.decode(&with_bos, true).unwrap(), "Hello world");
    assert_eq!(tok.token_to_piece(15043).unwrap(), b" Hello");
    assert_eq!(tok.token_to_piece(13).unwrap(), b"\n"); // <0x0A>
    assert_eq!(tok.token_type(13).unwrap(), TokenType::Byte);
}

#[test]
fn bert_adds_cls_and_sep() {
    let Some(tok) = load("bert-bge") else { return };
    assert_eq!(tok.model_kind(), "bert");
    let ids = tok.encode("Hello World", true, false).unwrap();
    assert_eq!(ids.first(), Some(&101));
    assert_eq!(ids.last(), Some(&102));
    assert_eq!(tok.decode(&ids, true).unwrap(), "hello world");
    assert_eq!(tok.token_text(7592).unwrap(), "\u{2581}hello"); // stored in phantom-space form
    assert_eq!(tok.token_to_piece(7592).unwrap(), b" hello");
    assert!(tok
        .encode("[CLS] a", false, true)
        .unwrap()
        .starts_with(&[101]));
}

#[test]
fn gpt2_and_phi3_end_of_generation() {
    if let Some(tok) = load("gpt-2") {
        assert!(!tok.add_bos() && !tok.add_eos());
        assert_eq!(tok.eos_ids(), [50256]);
        assert_eq!(
            tok.encode("Hello", true, false).unwrap(),
            tok.encode("Hello", false, false).unwrap()
        );
    }
    if let Some(tok) = load("phi-3") {
        let eog = tok.eos_ids();
        for id in [32000, 32007] {
            assert!(eog.contains(&id), "{eog:?}"); // <|endoftext|>, <|end|>
        }
        // Phi-3's chat markers swallow the whitespace after them (as in its tokenizer.json).
        let ids = tok.encode("<|user|>\nHi<|end|>\n", false, true).unwrap();
        assert_eq!(ids, [32010, 6324, 32007]);
    }
}

#[test]
fn shared_across_threads() {
    let Some(tok) = load("llama-bpe") else { return };
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(50);
    let want = tok.encode(&text, true, false).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(tok.encode(&text, true, false).unwrap(), want));
        }
    });
}
