//! `tokenizer.ggml.pre` → how a byte-level BPE vocabulary splits text before BPE.
//!
//! Each profile is the `pre_tokenizer` of the model's Hugging Face `tokenizer.json` (the test
//! vectors come from those tokenizers), written with the same building blocks: regex splits
//! that keep matches and the text between them as pieces (HF `Split`, behaviour `Isolated`),
//! `Digits`, `Punctuation` and `ByteLevel`. Where HF's pattern uses classes that llama.cpp's
//! engine lacks, llama.cpp spells an "adapted" regex; we keep the original, since fancy-regex
//! reads it; non-ASCII code points are written as escapes, so that no editor's Unicode
//! normalisation can change a class. Types whose splitting llama.cpp hand-codes (`afmoe` digit grouping, `hybriddna`)
//! or that are not byte-level (`whitespace`, `gemma4`, `sarvam-moe`) are not in the table.
//! The names and groups follow llama.cpp's `src/llama-vocab.cpp`.

use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// One step of a pre-tokenizer sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Split around every match of the regex (matches and the text between become pieces).
    Split(&'static str),
    /// Split digit runs from the rest; `individual` splits every digit on its own.
    Digits { individual: bool },
    /// Split runs of punctuation from the rest (HF `Punctuation`, contiguous).
    Punctuation,
    /// Map bytes to GPT-2's characters; `use_regex` first splits with the GPT-2 regex.
    ByteLevel { use_regex: bool },
}

#[derive(Debug)]
pub(crate) struct BpeProfile {
    /// The llama.cpp group this profile is named after (for messages).
    pub name: &'static str,
    pub steps: &'static [Step],
    /// The HF tokenizer normalises to NFC before splitting.
    pub nfc: bool,
    /// A piece that is a whole vocabulary entry becomes that token without merging.
    pub ignore_merges: bool,
    /// llama.cpp's default for `tokenizer.ggml.add_bos_token` when the key is absent.
    pub add_bos: bool,
}

use Step::{ByteLevel as Bl, Digits as Dg, Split as Sp};

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const JAIS2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
const DEEPSEEK_LLM_LETTERS: &str = concat!(
    r"\s?[A-Za-z\x{b5}\x{c0}-\x{d6}\x{d8}-\x{f6}\x{f8}-\x{1ba}\x{1bc}-\x{1bf}\x{1c4}-\x{293}",
    r"\x{295}-\x{2af}\x{370}-\x{373}\x{376}\x{377}\x{37b}-\x{37d}\x{37f}\x{386}\x{388}-\x{38a}",
    r"\x{38c}\x{38e}-\x{3a1}\x{3a3}-\x{3f5}\x{3f7}-\x{481}\x{48a}-\x{52f}\x{531}-\x{556}",
    r"\x{10a0}-\x{10c5}\x{13a0}-\x{13f5}\x{13f8}-\x{13fd}\x{1c90}-\x{1cba}\x{1cbd}-\x{1cbf}",
    r"\x{1d00}-\x{1d2b}\x{1d6b}-\x{1d77}\x{1d79}-\x{1d9a}\x{1e00}-\x{1f15}\x{1f18}-\x{1f1d}",
    r"\x{1f20}-\x{1f45}\x{1f48}-\x{1f4d}\x{1f50}-\x{1f57}\x{1f59}\x{1f5b}\x{1f5d}\x{1f5f}-",
    r"\x{1f7d}\x{1f80}-\x{1fb4}\x{1fb6}-\x{1fbc}\x{1fbe}\x{1fc2}-\x{1fc4}\x{1fc6}-\x{1fcc}",
    r"\x{1fd0}-\x{1fd3}\x{1fd6}-\x{1fdb}\x{1fe0}-\x{1fec}\x{1ff2}-\x{1ff4}\x{1ff6}-\x{1ffc}",
    r"\x{2102}\x{2107}\x{210a}-\x{2113}\x{2115}\x{2119}-\x{211d}\x{2124}\x{2126}\x{2128}",
    r"\x{212a}-\x{212d}\x{212f}-\x{2134}\x{2139}\x{213c}-\x{213f}\x{2145}-\x{2149}\x{214e}",
    r"\x{2183}\x{2184}\x{2c00}-\x{2c7b}\x{2c7e}-\x{2ce4}\x{2ceb}-\x{2cee}\x{2cf2}\x{2cf3}",
    r"\x{a640}-\x{a66d}\x{a680}-\x{a69b}\x{a722}-\x{a76f}\x{a771}-\x{a787}\x{a78b}-\x{a78e}",
    r"\x{ab70}-\x{abbf}\x{fb00}-\x{fb06}\x{fb13}-\x{fb17}\x{ff21}-\x{ff3a}\x{ff41}-\x{ff5a}",
    r"\x{10400}-\x{1044f}\x{104b0}-\x{104d3}\x{104d8}-\x{104fb}\x{10c80}-\x{10cb2}\x{10cc0}-",
    r"\x{10cf2}\x{118a0}-\x{118df}\x{1e900}-\x{1e943}]+",
);
const DEEPSEEK_LLM_PUNCT: &str =
    r"\s?[!-/:-~\x{ff01}-\x{ff0f}\x{ff1a}-\x{ff5e}\x{2018}-\x{201f}\x{3000}-\x{3002}]+";
const CJK_HANGUL: &str = r"[\x{4e00}-\x{9fa5}\x{800}-\x{4e00}\x{ac00}-\x{d7ff}]+";
const CJK_KANA: &str = r"[\x{4e00}-\x{9fa5}\x{3040}-\x{309f}\x{30a0}-\x{30ff}]+";
const DEEPSEEK_V3: &str = r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SPARK2_5: &str = r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+";
const YOUTU_CJK: &str = concat!(
    r"[\x{ac00}-\x{d7a3}\x{3131}-\x{318e}]+",
    r"|[\x{ff01}\x{2026}\x{201c}\x{201d}\x{2018}\x{2019}\x{2014}\x{ff1a}\x{ff1b}\x{ff0c}\x{3001}-\x{303f}\x{fe30}-\x{fe4f}]+",
    r"|[\x{3105}-\x{312f}]+|[\x{4e00}-\x{9fa5}\x{3040}-\x{309f}\x{30a0}-\x{30ff}]+",
);
const O200K: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const YOUTU: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GRANITE_EMB_MULTI: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const KIMI_K2: &str = r"[\p{Han}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const BLOOM: &str = r" ?[^(\s|[.,!?\x{2026}\x{3002}\x{ff0c}\x{3001}\x{964}\x{6d4}\x{60c}])]+";
const BAILINGMOE: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const UFAKZEKA: &str =
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const EXAONE_MOE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+";
const MINICPM5: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TINY_AYA_DIGITS: &str = r"\d{1,3}(?=(?:\d{3})*\b)";

const NO_REGEX: Step = Bl { use_regex: false };

macro_rules! profile {
    ($name:literal, [$($step:expr),* $(,)?] $(, $flag:ident)*) => {{
        #[allow(unused_mut)]
        let mut p = BpeProfile {
            name: $name,
            steps: &[$($step),*],
            nfc: false,
            ignore_merges: false,
            add_bos: false,
        };
        $(profile!(@flag p, $flag);)*
        p
    }};
    (@flag $p:ident, nfc) => { $p.nfc = true };
    (@flag $p:ident, ignore_merges) => { $p.ignore_merges = true };
    (@flag $p:ident, add_bos) => { $p.add_bos = true };
}

const PROFILES: &[(&[&str], BpeProfile)] = &[
    (
        &[
            "gpt-2",
            "default",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "jais",
            "trillion",
            "granite-docling",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
        ],
        profile!("gpt-2", [Bl { use_regex: true }]),
    ),
    // GPT-NeoX's tokenizer (MPT, OLMo) normalises to NFC first.
    (
        &["mpt", "olmo"],
        profile!("mpt", [Bl { use_regex: true }], nfc),
    ),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        profile!("llama3", [Sp(LLAMA3), NO_REGEX], ignore_merges, add_bos),
    ),
    (
        &["dbrx", "smaug-bpe", "glm4", "chatglm-bpe"],
        profile!("dbrx", [Sp(LLAMA3), NO_REGEX]),
    ),
    (&["jais-2"], profile!("jais-2", [Sp(JAIS2), NO_REGEX])),
    (
        &["qwen2", "deepseek-r1-qwen", "megrez"],
        profile!("qwen2", [Sp(QWEN2), NO_REGEX], nfc),
    ),
    (
        &[
            "stablelm2",
            "hunyuan",
            "solar-open",
            "kormo",
            "f2llmv2",
            "grok-2",
        ],
        profile!("stablelm2", [Sp(QWEN2), NO_REGEX]),
    ),
    (&["qwen35"], profile!("qwen35", [Sp(QWEN35), NO_REGEX], nfc)),
    (
        &["deepseek-llm"],
        profile!(
            "deepseek-llm",
            [
                Sp(r"[\r\n]"),
                Sp(DEEPSEEK_LLM_LETTERS),
                Sp(DEEPSEEK_LLM_PUNCT),
                Sp(r"\s+$"),
                Sp(CJK_HANGUL),
                Dg { individual: false },
                NO_REGEX
            ]
        ),
    ),
    (
        &["deepseek-coder"],
        profile!(
            "deepseek-coder",
            [
                Sp(r"[\r\n]"),
                Sp(r"\s?\p{L}+"),
                Sp(r"\s?\p{P}+"),
                Sp(CJK_HANGUL),
                Dg { individual: true },
                NO_REGEX
            ]
        ),
    ),
    (
        &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        profile!(
            "deepseek-v3",
            [Sp(r"\p{N}{1,3}"), Sp(CJK_KANA), Sp(DEEPSEEK_V3), NO_REGEX]
        ),
    ),
    (
        &["spark2_5"],
        profile!(
            "spark2_5",
            [
                Sp(r"\p{N}{1,3}"),
                Sp(CJK_KANA),
                Sp(SPARK2_5),
                Sp(r"\p{N}"),
                NO_REGEX
            ]
        ),
    ),
    (
        &["youtu"],
        profile!("youtu", [Sp(YOUTU_CJK), Sp(YOUTU), NO_REGEX], ignore_merges),
    ),
    (
        &["falcon"],
        profile!(
            "falcon",
            [
                Step::Punctuation,
                Bl { use_regex: true },
                Dg { individual: false },
                Sp("[0-9][0-9][0-9]")
            ]
        ),
    ),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        profile!(
            "starcoder",
            [Dg { individual: true }, Bl { use_regex: true }]
        ),
    ),
    (
        &["poro-chat", "bloom", "gpt3-finnish"],
        profile!("bloom", [Sp(BLOOM), NO_REGEX]),
    ),
    (
        &["viking"],
        profile!("viking", [Sp(BLOOM), Sp(r"\p{N}"), NO_REGEX]),
    ),
    (
        &["tekken"],
        profile!("tekken", [Sp(TEKKEN), NO_REGEX], ignore_merges, add_bos),
    ),
    (
        &["chameleon"],
        profile!(
            "chameleon",
            [
                Sp("<sentinel:[0-9]+>"),
                Sp("(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
                Sp("([\\t\\n]|    |  )"),
                Sp(r"\p{N}"),
                Sp(r"[\p{P}!-/:-@\[-`{-~]"),
                Bl { use_regex: true }
            ],
            add_bos
        ),
    ),
    (
        &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        profile!("gpt-4o", [Sp(O200K), NO_REGEX]),
    ),
    (
        &["granite-embed-multi-97m"],
        profile!(
            "granite-embed-multi",
            [Sp(GRANITE_EMB_MULTI), NO_REGEX],
            ignore_merges
        ),
    ),
    (
        &["tiny_aya", "cohere2moe"],
        profile!("tiny_aya", [Sp(TINY_AYA_DIGITS), Sp(O200K), NO_REGEX]),
    ),
    (&["kimi-k2"], profile!("kimi-k2", [Sp(KIMI_K2), NO_REGEX])),
    (
        &["superbpe"],
        profile!(
            "superbpe",
            [Sp(r"\p{N}+"), Sp(r"(?=(\d{3})+(?!\d))"), NO_REGEX]
        ),
    ),
    (
        &["bailingmoe", "bailingmoe2", "llada-moe"],
        profile!("bailingmoe", [Sp(BAILINGMOE), NO_REGEX]),
    ),
    (
        &["seed-coder"],
        profile!("seed-coder", [Sp(SEED_CODER), NO_REGEX]),
    ),
    (
        &["ufakzeka"],
        profile!("ufakzeka", [Sp(UFAKZEKA), NO_REGEX]),
    ),
    (
        &["laguna"],
        profile!("laguna", [Sp(r"[^\n]+|[\n]+"), Sp(QWEN2), NO_REGEX]),
    ),
    (
        &["exaone-moe"],
        profile!("exaone-moe", [Sp(EXAONE_MOE), NO_REGEX]),
    ),
    (
        &["minicpm5"],
        profile!(
            "minicpm5",
            [Sp(r"\p{N}{1,3}"), Sp(MINICPM5), NO_REGEX],
            ignore_merges
        ),
    ),
];

/// The profile for a `tokenizer.ggml.pre` value, or `None` if the type is not in the table.
pub(crate) fn bpe_profile(pre: &str) -> Option<&'static BpeProfile> {
    PROFILES
        .iter()
        .find(|(names, _)| names.contains(&pre))
        .map(|(_, profile)| profile)
}

/// Every `tokenizer.ggml.pre` name the table knows (for messages and tests).
pub(crate) fn known_pre_types() -> impl Iterator<Item = &'static str> {
    PROFILES.iter().flat_map(|(names, _)| names.iter().copied())
}

/// Builds the HF pre-tokenizer of a profile; the error is the regex engine's message.
pub(crate) fn build_pre_tokenizer(profile: &BpeProfile) -> Result<PreTokenizerWrapper, String> {
    let mut steps = Vec::with_capacity(profile.steps.len());
    for step in profile.steps {
        steps.push(match *step {
            Step::Split(regex) => Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| format!("regex {regex:?}: {e}"))?
            .into(),
            Step::Digits { individual } => Digits::new(individual).into(),
            Step::Punctuation => Punctuation::new(SplitDelimiterBehavior::Contiguous).into(),
            // No prefix space: GGUF conversions and the HF files of these models add none.
            Step::ByteLevel { use_regex } => ByteLevel::new(false, true, use_regex).into(),
        });
    }
    Ok(if steps.len() == 1 {
        steps.remove(0)
    } else {
        Sequence::new(steps).into()
    })
}

/// The normaliser a profile asks for, if any.
pub(crate) fn normalizer(profile: &BpeProfile) -> Option<NormalizerWrapper> {
    profile.nfc.then(|| NFC.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_compiles() {
        for (names, profile) in PROFILES {
            if let Err(e) = build_pre_tokenizer(profile) {
                panic!("{names:?}: {e}");
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = known_pre_types().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for name in [
            "gpt-2",
            "llama-bpe",
            "qwen2",
            "deepseek-llm",
            "deepseek-coder",
            "falcon",
            "mpt",
            "starcoder",
            "refact",
            "command-r",
            "olmo",
            "dbrx",
            "smaug-bpe",
            "poro-chat",
            "jais",
            "stablelm2",
            "tekken",
            "smollm",
            "codeshell",
            "bloom",
            "gpt3-finnish",
            "exaone",
            "chameleon",
            "minerva-7b",
            "megrez",
            "gpt-4o",
            "superbpe",
            "trillion",
            "bailingmoe",
            "seed-coder",
            "kimi-k2",
            "grok-2",
            "deepseek-v3",
        ] {
            assert!(bpe_profile(name).is_some(), "{name}");
        }
    }
}
