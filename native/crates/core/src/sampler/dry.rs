//! DRY ("Don't Repeat Yourself", koboldcpp's sampler, as llama.cpp and mistral.rs run it): a
//! token that would extend a repeat of the history's end is penalised by
//! `multiplier · base^(length − allowed_length)`, where `length` is how many tokens the repeat
//! already covers. Sequence breakers (text such as "\n" or ":") cut repeats: a repeat never
//! reaches back past the latest breaker, and a token that is a breaker on its own is never
//! penalised. The arithmetic follows llama.cpp's `llama_sampler_dry` (its results are the
//! reference the engine's tests compare with).

use std::collections::HashMap;

/// DRY's settings. It is off when `multiplier` is 0, `base` is below 1 or the window is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct DryParams {
    pub multiplier: f32,
    pub base: f32,
    /// Repeats up to this many tokens long go unpenalised.
    pub allowed_length: usize,
    /// How many of the latest tokens are searched for repeats; `None`: the whole history.
    pub penalty_last_n: Option<usize>,
    /// The breakers as token sequences, head first (see [`breaker_sequences`]).
    pub sequence_breakers: Vec<Vec<u32>>,
}

/// The longest breaker accepted, in bytes, and the longest tokenized rest of one (llama.cpp's
/// bounds: they keep the scan for breakers linear in the window).
pub const MAX_BREAKER_BYTES: usize = 40;
const MAX_BREAKER_TAIL_TOKENS: usize = 20;

/// `ln(f32::MAX)`: the exponent is capped so that `base^exponent` stays finite.
const F32_MAX_LN: f32 = 88.722_84;

/// DRY ready to apply: the breakers indexed by their head token.
#[derive(Clone, Debug)]
pub(crate) struct Dry {
    params: DryParams,
    /// Head token → the tails that complete a breaker after it (empty: the head alone is one).
    tails: HashMap<u32, Vec<Vec<u32>>>,
}

impl Dry {
    pub(crate) fn new(params: DryParams) -> Dry {
        let mut tails: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
        for sequence in &params.sequence_breakers {
            if let Some((&head, tail)) = sequence.split_first() {
                let known = tails.entry(head).or_default();
                if !known.iter().any(|t| t == tail) {
                    known.push(tail.to_vec());
                }
            }
        }
        Dry { params, tails }
    }

    fn is_active(&self) -> bool {
        let p = &self.params;
        p.multiplier != 0.0 && p.base >= 1.0 && p.penalty_last_n != Some(0)
    }

    /// Subtracts the penalties from `logits`, given the tokens so far (prompt and output).
    pub(crate) fn apply(&self, logits: &mut [f32], history: &[u32]) {
        if !self.is_active() {
            return;
        }
        let p = &self.params;
        let n = p
            .penalty_last_n
            .map_or(history.len(), |n| n.min(history.len()));
        let window = &history[history.len() - n..];
        if window.len() <= p.allowed_length {
            return;
        }
        let limit = self.repeat_limit(window);
        if limit < p.allowed_length {
            return;
        }
        let repeats = suffix_repeats(window, limit);
        // The longest repeat each token would extend: the token after each repeat's end.
        let mut longest: HashMap<u32, usize> = HashMap::new();
        for (end, &length) in repeats.iter().enumerate().take(window.len() - 1) {
            if length >= p.allowed_length {
                let best = longest.entry(window[end + 1]).or_insert(length);
                *best = (*best).max(length);
            }
        }
        let max_exponent = if p.base > 1.000_001 {
            (F32_MAX_LN / p.base.ln()) as usize
        } else {
            0
        };
        for (token, length) in longest {
            if self.is_single_token_breaker(token) {
                continue;
            }
            let Some(logit) = logits.get_mut(token as usize) else {
                continue;
            };
            let mut exponent = length - p.allowed_length;
            if max_exponent > 0 {
                exponent = exponent.min(max_exponent);
            }
            // In f64 and then rounded, as llama.cpp's `std::pow(float, int)` computes it.
            let penalty = f64::from(p.multiplier) * f64::from(p.base).powf(exponent as f64);
            *logit -= penalty as f32;
        }
    }

    fn is_single_token_breaker(&self, token: u32) -> bool {
        self.tails
            .get(&token)
            .is_some_and(|tails| tails.iter().any(|t| t.is_empty()))
    }

    /// How far back from the window's end a repeat may reach: up to the latest breaker (the
    /// longest one that ends there when several start at the same token), or the whole window.
    fn repeat_limit(&self, window: &[u32]) -> usize {
        let last = window.len() - 1;
        for back in 0..window.len() {
            let Some(tails) = self.tails.get(&window[last - back]) else {
                continue;
            };
            // The tail follows the head: window[last - back + 1 ..].
            let following = &window[last - back + 1..];
            let matched = tails
                .iter()
                .filter(|tail| tail.len() <= back && following.starts_with(tail))
                .map(Vec::len)
                .max();
            if let Some(tail_len) = matched {
                return back - tail_len;
            }
        }
        window.len()
    }
}

/// For each position of `window`: how many tokens ending there equal the tokens ending at the
/// window's last position, at most `limit` (0 for the last position itself). This is the
/// Z-function of the reversed window, linear in its length.
fn suffix_repeats(window: &[u32], limit: usize) -> Vec<usize> {
    let len = window.len();
    let reversed = |i: usize| window[len - 1 - i];
    // z[k]: the longest common prefix of the reversed window and its suffix from k.
    let mut z = vec![0usize; len];
    // [box_start, box_end): the match reaching furthest right so far.
    let (mut box_start, mut box_end) = (0usize, 0usize);
    for k in 1..len {
        let mut n = if k < box_end {
            z[k - box_start].min(box_end - k)
        } else {
            0
        };
        while k + n < len && reversed(n) == reversed(k + n) {
            n += 1;
        }
        if k + n > box_end {
            (box_start, box_end) = (k, k + n);
        }
        z[k] = n;
    }
    let mut repeats = vec![0usize; len];
    for (k, &n) in z.iter().enumerate().skip(1) {
        repeats[len - 1 - k] = n.min(limit);
    }
    repeats
}

/// Breaker strings as token sequences, the way llama.cpp (after koboldcpp) reads them, since a
/// breaker may be spelled by many tokens: every token whose text contains the breaker is a
/// breaker by itself; a token whose text ends with the breaker's beginning heads a sequence
/// whose tail is the rest of the breaker, tokenized (at most 20 tokens). `piece` gives a
/// token's text (its bytes), `tokenize` the ids of a text without special tokens.
///
/// Breakers longer than [`MAX_BREAKER_BYTES`] are the caller's to refuse; a rest that starts
/// inside a multi-byte character is not valid text, and is skipped.
pub fn breaker_sequences(
    breakers: &[String],
    vocab_size: u32,
    piece: impl Fn(u32) -> Vec<u8>,
    mut tokenize: impl FnMut(&str) -> Vec<u32>,
) -> Vec<Vec<u32>> {
    let breakers: Vec<&[u8]> = breakers
        .iter()
        .map(|b| b.as_bytes())
        .filter(|b| !b.is_empty())
        .collect();
    let mut rests: HashMap<Vec<u8>, Option<Vec<u32>>> = HashMap::new();
    let mut out: Vec<Vec<u32>> = Vec::new();
    for token in 0..vocab_size {
        let word = piece(token);
        let mut heads: Vec<Vec<u32>> = Vec::new();
        for &breaker in &breakers {
            if contains(&word, breaker) {
                heads.push(vec![token]);
                continue;
            }
            // Where the word ends with the breaker's beginning (`matched` bytes of it).
            for start in 0..word.len() {
                let matched = word.len() - start;
                if matched >= breaker.len() || word[start..] != breaker[..matched] {
                    continue;
                }
                let rest = rests.entry(breaker[matched..].to_vec()).or_insert_with(|| {
                    std::str::from_utf8(&breaker[matched..]).ok().map(|text| {
                        let mut ids = tokenize(text);
                        ids.truncate(MAX_BREAKER_TAIL_TOKENS);
                        ids
                    })
                });
                if let Some(rest) = rest {
                    let mut sequence = Vec::with_capacity(rest.len() + 1);
                    sequence.push(token);
                    sequence.extend_from_slice(rest);
                    if !heads.contains(&sequence) {
                        heads.push(sequence);
                    }
                }
            }
        }
        out.extend(heads);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 10;

    fn dry(allowed_length: usize, breakers: Vec<Vec<u32>>) -> Dry {
        Dry::new(DryParams {
            multiplier: 1.0,
            base: 2.0,
            allowed_length,
            penalty_last_n: None,
            sequence_breakers: breakers,
        })
    }

    /// The penalty of every token of the vocabulary after `history` (logits start at 0).
    fn penalties(d: &Dry, history: &[u32]) -> Vec<f32> {
        let mut logits = vec![0.0; VOCAB];
        d.apply(&mut logits, history);
        logits.iter().map(|l| -l).collect()
    }

    fn none(p: &[f32]) -> bool {
        p.iter().all(|&x| x == 0.0)
    }

    #[test]
    fn a_repeat_longer_than_allowed_penalises_the_token_that_would_extend_it() {
        // 1 2 3 4 1 2 3: the end "1 2 3" also ends at position 2, where 4 followed; no other
        // position ends with the last token 3. The repeat is 3 long: with allowed length 2,
        // 4 costs multiplier · base^(3 − 2) = 1 · 2 = 2.
        let history = [1, 2, 3, 4, 1, 2, 3];
        let mut expected = vec![0.0; VOCAB];
        expected[4] = 2.0;
        assert_eq!(penalties(&dry(2, vec![]), &history), expected);
        // Allowed 3: 3 ≥ 3 still counts, base^0 = 1. Allowed 4: nothing.
        expected[4] = 1.0;
        assert_eq!(penalties(&dry(3, vec![]), &history), expected);
        assert!(none(&penalties(&dry(4, vec![]), &history)));
    }

    #[test]
    fn each_token_takes_its_longest_repeat() {
        // 5 1 2 6 1 2 7 0 1 2: the end "1 2" also ends at positions 2 and 5 (2 long each: the
        // tokens before, 5 and 6, differ from 0), followed by 6 and 7. Allowed 1: each costs
        // 2^(2 − 1) = 2.
        let mut expected = vec![0.0; VOCAB];
        expected[6] = 2.0;
        expected[7] = 2.0;
        assert_eq!(
            penalties(&dry(1, vec![]), &[5, 1, 2, 6, 1, 2, 7, 0, 1, 2]),
            expected
        );
        // 3 1 2 7 5 1 2 7 3 1 2: "3 1 2" ends at position 2 (3 long) and "1 2" at 6 (2 long:
        // 5 ≠ 3), both followed by 7, which takes the longer: 2^(3 − 1) = 4.
        let mut expected = vec![0.0; VOCAB];
        expected[7] = 4.0;
        assert_eq!(
            penalties(&dry(1, vec![]), &[3, 1, 2, 7, 5, 1, 2, 7, 3, 1, 2]),
            expected
        );
    }

    #[test]
    fn a_run_of_one_token_penalises_that_token_by_the_run_length() {
        // 4 4 4 4 4: "4 4 4 4" ends at position 3 (4 long), "4 4 4" at 2, …; all are followed by
        // 4, which takes the longest: 2^(4 − 2) = 4.
        let mut expected = vec![0.0; VOCAB];
        expected[4] = 4.0;
        assert_eq!(penalties(&dry(2, vec![]), &[4, 4, 4, 4, 4]), expected);
    }

    #[test]
    fn breakers_cut_repeats_and_are_never_penalised() {
        // 1 2 3 4 1 2 3 penalises 4 by 2 without breakers (first test). With 2 a breaker, a
        // repeat may not reach back past the latest 2, 1 token from the end: the limit 1 is
        // below the allowed 2, so nothing.
        let history = [1, 2, 3, 4, 1, 2, 3];
        assert!(none(&penalties(&dry(2, vec![vec![2]]), &history)));
        // With 4 a breaker, the latest 4 is 3 back: "1 2 3" still fits, but 4 itself is a
        // breaker, never penalised.
        assert!(none(&penalties(&dry(2, vec![vec![4]]), &history)));
        // 8 9 3 1 2 8 9 3 1 2: "8 9 3 1 2" ends at position 4 (5 long), followed by 8:
        // 2^(5 − 1) = 16 with allowed 1. The two-token breaker "3 1" last starts 2 back from the
        // end, so repeats may cover the 1 token after it: 8 costs 2^(1 − 1) = 1.
        let history = [8, 9, 3, 1, 2, 8, 9, 3, 1, 2];
        let mut expected = vec![0.0; VOCAB];
        expected[8] = 16.0;
        assert_eq!(penalties(&dry(1, vec![]), &history), expected);
        expected[8] = 1.0;
        assert_eq!(penalties(&dry(1, vec![vec![3, 1]]), &history), expected);
        // A head whose tail is not (yet) there cuts nothing: "3 9" never occurs.
        expected[8] = 16.0;
        assert_eq!(penalties(&dry(1, vec![vec![3, 9]]), &history), expected);
    }

    #[test]
    fn the_window_and_the_exponent_cap() {
        // penalty_last_n 4 sees only 4 1 2 3, where the last token 3 occurs once: nothing.
        let mut d = dry(1, vec![]);
        d.params.penalty_last_n = Some(4);
        assert!(none(&penalties(&d, &[1, 2, 3, 4, 1, 2, 3])));
        // A run of 200: the repeat is 199 long, the exponent 198 with allowed 1. With base
        // 1.75 it is capped at ⌊88.72 / ln 1.75⌋ = 158, so the penalty stays finite.
        let capped = Dry::new(DryParams {
            base: 1.75,
            ..d.params.clone()
        });
        let mut capped_params = capped.params.clone();
        capped_params.penalty_last_n = None;
        let mut logits = vec![0.0f32; VOCAB];
        Dry::new(capped_params).apply(&mut logits, &[3; 200]);
        assert_eq!(logits[3], -(1.75f64.powi(158) as f32));
        assert!(logits[3].is_finite());
        // Off: multiplier 0, base below 1, or an empty window.
        for params in [
            DryParams {
                multiplier: 0.0,
                ..d.params.clone()
            },
            DryParams {
                base: 0.5,
                ..d.params.clone()
            },
            DryParams {
                penalty_last_n: Some(0),
                ..d.params.clone()
            },
        ] {
            assert!(none(&penalties(&Dry::new(params), &[3; 20])));
        }
    }

    #[test]
    fn suffix_repeats_agree_with_a_direct_count() {
        let mut state = 12345u32;
        for len in 1..60 {
            let window: Vec<u32> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) % 3
                })
                .collect();
            for limit in [0, 2, len] {
                let direct: Vec<usize> = (0..len)
                    .map(|end| {
                        if end == len - 1 {
                            return 0;
                        }
                        let n = (0..=end)
                            .take_while(|&k| window[end - k] == window[len - 1 - k])
                            .count();
                        n.min(limit)
                    })
                    .collect();
                assert_eq!(suffix_repeats(&window, limit), direct, "{window:?}");
            }
        }
    }

    #[test]
    fn breaker_strings_become_heads_and_tails() {
        // Token texts: 0 "a", 1 "\n", 2 "x\ny", 3 "b:", 4 ":", 5 "c:" , 6 "**", 7 "z*".
        let pieces = ["a", "\n", "x\ny", "b:", ":", "c:", "**", "z*"];
        let tokenize = |text: &str| -> Vec<u32> {
            match text {
                ":x" => vec![4, 0],
                "*" => vec![7],
                _ => vec![],
            }
        };
        let sequences = breaker_sequences(
            &["\n".into(), "::x".into(), "**".into()],
            pieces.len() as u32,
            |id| pieces[id as usize].as_bytes().to_vec(),
            tokenize,
        );
        assert_eq!(
            sequences,
            vec![
                // "\n" is inside tokens 1 and 2.
                vec![1],
                vec![2],
                // Tokens ending in ":" begin "::x"; the rest ":x" tokenizes as [4, 0].
                vec![3, 4, 0],
                vec![4, 4, 0],
                vec![5, 4, 0],
                // "**" is token 6; token 7 ends in "*": the rest "*" is [7].
                vec![6],
                vec![7, 7],
            ]
        );
    }
}
