//! Incremental decoding for streaming: ids go in one at a time, finished text comes out.
//!
//! Decoding token by token and concatenating is wrong in two ways: a character split over
//! byte tokens decodes as U+FFFD halves, and decoders look at neighbours (SentencePiece drops
//! the space of the first token only, WordPiece joins continuations). So, as HF's
//! `DecodeStream` does, we decode a short window of recent ids and emit what the window's text
//! gained over the text it had before the new id; while that text ends in U+FFFD (an
//! incomplete UTF-8 sequence) nothing is emitted. The window drops ids once their text is out.
//!
//! The stream owns an `Arc` of its tokenizer, so a binding can keep it without lifetimes.

use std::sync::Arc;

use super::{Result, Tokenizer};

#[derive(Debug, Clone)]
pub struct DecodeStream {
    tokenizer: Arc<Tokenizer>,
    skip_special_tokens: bool,
    /// The window: ids whose text was emitted (context) followed by ids not yet emitted.
    ids: Vec<u32>,
    /// The window's text as of the last emission.
    prefix: String,
    /// Where, in `ids`, the ids of the last emission start; earlier ones leave on the next.
    prefix_index: usize,
}

impl DecodeStream {
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> DecodeStream {
        DecodeStream {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_index: 0,
        }
    }

    /// Adds `id`; returns the text it completes, or `None` while a character is incomplete
    /// (or the id adds no text, as a skipped special token). An id outside the vocabulary is
    /// an error and leaves the stream as it was.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let tokenizer = &*self.tokenizer;
        self.ids.push(id);
        let text = match tokenizer.decode(&self.ids, self.skip_special_tokens) {
            Ok(text) => text,
            Err(e) => {
                self.ids.pop();
                return Err(e);
            }
        };
        if text.len() <= self.prefix.len() || text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(new_text) = new_suffix(&self.prefix, &text) else {
            return Ok(None);
        };
        let new_text = new_text.to_string();
        // Keep the ids of this emission as context for the next one.
        let next_index = self.ids.len() - self.prefix_index;
        self.ids.drain(..self.prefix_index);
        self.prefix = tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        self.prefix_index = next_index;
        Ok(Some(new_text))
    }

    /// Returns whatever is held back ("" if nothing; an incomplete character comes out as
    /// U+FFFD) and resets the stream for a new sequence.
    pub fn flush(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        let out = if text.len() > self.prefix.len() {
            new_suffix(&self.prefix, &text)
                .unwrap_or_default()
                .to_string()
        } else {
            String::new()
        };
        self.ids.clear();
        self.prefix.clear();
        self.prefix_index = 0;
        Ok(out)
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }
}

/// The part of `text` after `prefix`. Decoders that rewrite earlier text (WordPiece's
/// clean-up joining " ," into ",") can break the prefix; then the bytes past the old prefix's
/// length are emitted when they start a character, since text already sent cannot be taken
/// back.
fn new_suffix<'t>(prefix: &str, text: &'t str) -> Option<&'t str> {
    if text.starts_with(prefix) || text.is_char_boundary(prefix.len()) {
        text.get(prefix.len()..)
    } else {
        None
    }
}
