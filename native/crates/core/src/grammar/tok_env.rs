//! Our tokenizer as llguidance sees it: every token's bytes in a trie, and a tokenization of
//! byte strings for the tokens a grammar forces.

use std::sync::Arc;

use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;

pub struct TokenizerTokEnv {
    tokenizer: Arc<Tokenizer>,
    trie: TokTrie,
}

impl TokenizerTokEnv {
    /// The trie of `tokenizer`'s vocabulary. Special tokens (BOS, EOS, chat markers) are
    /// spelled with llguidance's 0xFF marker so that no grammar text matches them; the end
    /// tokens are the tokenizer's EOS set.
    pub fn new(tokenizer: Arc<Tokenizer>) -> TokenizerTokEnv {
        let n = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                let piece = tokenizer.token_to_piece(id).unwrap_or_default();
                if tokenizer.is_special(id) {
                    let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    word.extend_from_slice(tokenizer.token_text(id).unwrap_or_default().as_bytes());
                    word
                } else {
                    piece
                }
            })
            .collect();
        let eos = tokenizer.eos_ids();
        let mut info = TokRxInfo::new(n as u32, eos.first().copied().unwrap_or(0));
        info.tok_bos = tokenizer.bos_id();
        let mut trie = TokTrie::from(&info, &words);
        if !eos.is_empty() {
            trie = trie.with_eos_tokens(&eos);
        }
        TokenizerTokEnv { tokenizer, trie }
    }
}

impl TokenizerEnv for TokenizerTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// The tokenizer's own (canonical) tokens when they spell exactly `bytes`; otherwise
    /// (a partial character, a SentencePiece leading space) the longest-match tokens of the
    /// trie, which always spell them.
    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(ids) = self.tokenizer.encode(text, false, false) {
                let spelled: Vec<u8> = ids
                    .iter()
                    .flat_map(|&id| self.trie.token(id).iter().copied())
                    .collect();
                if spelled == bytes {
                    return ids;
                }
            }
        }
        self.trie.greedy_tokenize(bytes)
    }
}
