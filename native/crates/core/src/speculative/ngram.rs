//! Prompt lookup (n-gram) proposals: find the last earlier place where the context's final
//! n tokens occurred and propose what followed them there. Costs nothing but a scan, and wins
//! where outputs repeat their input (code edits, quoting, extraction, reasoning that restates).

/// How [`propose`] matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NgramParams {
    /// The shortest suffix that may match (shorter matches guess too often wrong).
    pub min_n: usize,
    /// The longest suffix tried first.
    pub max_n: usize,
}

impl Default for NgramParams {
    fn default() -> Self {
        NgramParams { min_n: 2, max_n: 4 }
    }
}

/// Up to `k` tokens that followed the most recent earlier occurrence of the context's last
/// `n` tokens, for the longest `n` in `max_n..=min_n` that occurs; empty when none does.
pub fn propose(context: &[u32], k: usize, params: NgramParams) -> Vec<u32> {
    let len = context.len();
    if k == 0 {
        return Vec::new();
    }
    for n in (params.min_n.max(1)..=params.max_n).rev() {
        if n >= len {
            continue;
        }
        let suffix = &context[len - n..];
        // Latest start first; the occurrence must end before the suffix itself starts.
        for start in (0..len - n).rev() {
            if &context[start..start + n] == suffix {
                let from = start + n;
                return context[from..(from + k).min(len)].to_vec();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_latest_match_proposes_what_followed() {
        let p = NgramParams { min_n: 1, max_n: 3 };
        // "a b c d x a b c" → the last "a b c" before the suffix is followed by "d x".
        let ctx = [1, 2, 3, 4, 9, 1, 2, 3];
        assert_eq!(propose(&ctx, 4, p), [4, 9, 1, 2]);
        assert_eq!(propose(&ctx, 1, p), [4]);
        // Two earlier occurrences of "7 8": the later one wins.
        let ctx = [7, 8, 1, 7, 8, 2, 7, 8];
        assert_eq!(propose(&ctx, 2, NgramParams { min_n: 2, max_n: 2 }), [2, 7]);
    }

    #[test]
    fn no_match_no_proposal() {
        let p = NgramParams::default();
        assert!(propose(&[1, 2, 3, 4], 4, p).is_empty());
        assert!(propose(&[5], 4, p).is_empty());
        assert!(propose(&[1, 2, 1, 2], 0, p).is_empty());
        // A match shorter than min_n does not count.
        assert!(propose(&[1, 5, 6, 1], 3, NgramParams { min_n: 2, max_n: 3 }).is_empty());
    }
}
