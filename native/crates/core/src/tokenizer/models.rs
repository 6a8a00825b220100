//! The Hugging Face pipelines (normaliser, pre-tokenizer, model, decoder) we build for GGUF
//! vocabularies, one function per `tokenizer.ggml.model`. Each mirrors the `tokenizer.json`
//! that Hugging Face's converters write for such a vocabulary, since the reference ids come
//! from those tokenizers. Inputs are validated by `gguf.rs`; errors here are the engine's.

use ahash::AHashMap;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip as StripDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{
    BertNormalizer, Precompiled, Prepend, Replace, Sequence as NormalizerSequence, Strip,
};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{DecoderWrapper, NormalizerWrapper, Tokenizer};

use super::pre_tokenizers::{self, BpeProfile};

/// SentencePiece's word-boundary mark.
pub(crate) const SPIECE_UNDERLINE: &str = "\u{2581}";

/// Token id by token string, for the model builders.
pub(crate) type Vocab = AHashMap<String, u32>;

pub(crate) fn vocab_of(tokens: &[String]) -> Vocab {
    tokens
        .iter()
        .zip(0u32..)
        .map(|(t, i)| (t.clone(), i))
        .collect()
}

/// SentencePiece BPE ("llama"): the merges are not stored, so they are derived from the
/// scores the way Hugging Face's `SentencePieceExtractor` does: every split of a token into
/// two vocabulary entries is a merge; merges are ranked by the merged token's score (highest
/// first), then by the left and right pieces' lengths in characters (longest first); ties
/// keep token order, and splits of one token are ordered by (left id, right id).
pub(crate) fn spm_merges(
    tokens: &[String],
    scores: &[f32],
    vocab: &Vocab,
) -> Vec<(String, String)> {
    struct Candidate {
        left: u32,
        right: u32,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut all = Vec::new();
    let mut local = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        for (at, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(at);
            if let (Some(&left), Some(&right)) = (vocab.get(l), vocab.get(r)) {
                local.push(Candidate {
                    left,
                    right,
                    score,
                    left_chars: l.chars().count(),
                    right_chars: r.chars().count(),
                });
            }
        }
        local.sort_by_key(|c| (c.left, c.right));
        all.append(&mut local);
    }
    // A stable sort, descending, as Python's `sorted(..., reverse=True)`.
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    all.into_iter()
        .map(|c| {
            (
                tokens[c.left as usize].clone(),
                tokens[c.right as usize].clone(),
            )
        })
        .collect()
}

/// How a SentencePiece vocabulary treats spaces.
pub(crate) struct SpmOptions {
    /// Prepend "▁" to the text (SentencePiece's `add_dummy_prefix`), and strip one leading
    /// space when decoding.
    pub add_space_prefix: bool,
    pub unk: Option<String>,
}

/// "llama": BPE with byte fallback over "▁"-spelled text (HF `LlamaConverter`, legacy mode).
pub(crate) fn spm(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    opts: &SpmOptions,
) -> Result<Tokenizer, String> {
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = &opts.unk {
        builder = builder.unk_token(unk.clone());
    }
    let model = builder.build().map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);

    let replace = Replace::new(" ", SPIECE_UNDERLINE).map_err(|e| e.to_string())?;
    let normalizer: NormalizerWrapper = if opts.add_space_prefix {
        NormalizerSequence::new(vec![
            Prepend::new(SPIECE_UNDERLINE.into()).into(),
            replace.into(),
        ])
        .into()
    } else {
        replace.into()
    };
    tokenizer.with_normalizer(Some(normalizer));

    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPIECE_UNDERLINE, " ")
            .map_err(|e| e.to_string())?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if opts.add_space_prefix {
        decoders.push(StripDecoder::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// "gpt2": byte-level BPE with stored merges and the pre-tokenizer of `profile`.
pub(crate) fn byte_level_bpe(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    profile: &BpeProfile,
) -> Result<Tokenizer, String> {
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(profile.ignore_merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(pre_tokenizers::normalizer(profile));
    tokenizer.with_pre_tokenizer(Some(pre_tokenizers::build_pre_tokenizer(profile)?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

pub(crate) struct WordPieceOptions {
    pub unk: String,
    pub lowercase: bool,
    pub strip_accents: bool,
}

/// llama.cpp stores BERT vocabularies in "phantom space" form ("▁word" starts a word, a bare
/// piece continues one, "[X]" stays); the HF WordPiece model wants "word" and "##piece".
pub(crate) fn wordpiece_token(stored: &str) -> String {
    if let Some(word) = stored.strip_prefix(SPIECE_UNDERLINE) {
        word.to_string()
    } else if stored.len() > 2 && stored.starts_with('[') && stored.ends_with(']') {
        stored.to_string()
    } else {
        format!("##{stored}")
    }
}

/// "bert": WordPiece with BERT's normaliser and pre-tokenizer (HF `BertConverter`).
pub(crate) fn wordpiece(vocab: Vocab, opts: &WordPieceOptions) -> Result<Tokenizer, String> {
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(opts.unk.clone())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(
        true,
        true,
        Some(opts.strip_accents),
        opts.lowercase,
    )));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    Ok(tokenizer)
}

pub(crate) struct UnigramOptions {
    pub unk: Option<usize>,
    pub byte_fallback: bool,
    pub add_space_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub precompiled_charsmap: Option<Vec<u8>>,
}

/// "t5": Unigram over SentencePiece's normalisation (HF `T5Converter` / `SpmConverter`).
pub(crate) fn unigram(
    pieces: Vec<(String, f64)>,
    opts: &UnigramOptions,
) -> Result<Tokenizer, String> {
    let model = Unigram::from(pieces, opts.unk, opts.byte_fallback).map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);

    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if let Some(map) = &opts.precompiled_charsmap {
        let precompiled =
            Precompiled::from(map).map_err(|e| format!("precompiled_charsmap: {e}"))?;
        normalizers.push(precompiled.into());
    }
    if opts.remove_extra_whitespaces {
        normalizers.push(Strip::new(true, true).into());
        let collapse = tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into());
        normalizers.push(
            Replace::new(collapse, " ")
                .map_err(|e| e.to_string())?
                .into(),
        );
    }
    if !normalizers.is_empty() {
        tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    }

    let scheme = if opts.add_space_prefix {
        PrependScheme::Always
    } else {
        PrependScheme::Never
    };
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('\u{2581}', scheme, true)));
    let mut decoders: Vec<DecoderWrapper> = Vec::new();
    if opts.byte_fallback {
        decoders.push(ByteFallback::new().into());
        decoders.push(Fuse::new().into());
    }
    decoders.push(Metaspace::new('\u{2581}', scheme, true).into());
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_follow_scores_then_piece_lengths() {
        let tokens = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let merges = spm_merges(&tokens, &scores, &vocab_of(&tokens));
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        // "abc" (score -0.5) first, its longer left piece ("ab" + "c") before "a" + "bc".
        assert_eq!(pairs, [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]);
    }

    #[test]
    fn phantom_space_round_trip() {
        assert_eq!(wordpiece_token("\u{2581}the"), "the");
        assert_eq!(wordpiece_token("ing"), "##ing");
        assert_eq!(wordpiece_token("[CLS]"), "[CLS]");
        assert_eq!(wordpiece_token("["), "##[");
    }
}
