//! Choosing the next token from logits: greedy, or temperature sampling with top-k, top-p and
//! min-p truncation; logit bias, repetition / frequency / presence penalties and DRY first (in
//! llama.cpp's order); a seeded generator so a seed reproduces a completion; log-probabilities
//! on request.

pub mod dry;

use dry::Dry;
pub use dry::DryParams;

/// How to pick tokens. The defaults are greedy decoding with nothing applied.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below) means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; 0 keeps all.
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of tokens seen in the last
    /// `penalty_last_n` tokens; 1 is off (llama.cpp / CTRL style).
    pub repetition_penalty: f32,
    /// Subtracts `count · frequency_penalty` (OpenAI style).
    pub frequency_penalty: f32,
    /// Subtracts `presence_penalty` once per seen token (OpenAI style).
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at; 0 means all.
    pub penalty_last_n: usize,
    /// Added to the logits of the given tokens before anything else.
    pub logit_bias: Vec<(u32, f32)>,
    /// The DRY repetition penalty, after the others; None is off.
    pub dry: Option<DryParams>,
    /// Seed of this sequence's generator; None seeds from the clock.
    pub seed: Option<u64>,
    /// Return the log-probability of the chosen token and of the `n` most likely.
    pub top_logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            dry: None,
            seed: None,
            top_logprobs: None,
        }
    }
}

/// The token chosen, with log-probabilities when asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// log p(token) under the distribution after penalties and bias, before truncation.
    pub logprob: Option<f32>,
    /// The most likely tokens with their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// xoshiro256**: small, fast, and the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sequence's sampler: its parameters and its generator.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    dry: Option<Dry>,
    rng: Rng,
    /// Uniform draws taken from `rng` so far (a restarted sequence skips as many).
    draws: usize,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5EED)
        });
        Sampler {
            dry: params.dry.clone().map(Dry::new),
            params,
            rng: Rng::new(seed),
            draws: 0,
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether tokens are chosen by argmax (no generator involved).
    pub fn is_greedy(&self) -> bool {
        self.params.temperature <= 0.0
    }

    /// Moves the generator past `draws` earlier draws, so that a sequence restarted after a
    /// preemption continues the same random stream.
    pub fn skip_draws(&mut self, draws: usize) {
        for _ in 0..draws {
            self.draw();
        }
    }

    /// Draws taken so far.
    pub fn draws(&self) -> usize {
        self.draws
    }

    /// One uniform draw in [0, 1).
    pub fn draw(&mut self) -> f64 {
        self.draws += 1;
        self.rng.next_f64()
    }

    /// Picks the next token from `logits` (modified in place), given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Sampled {
        self.process(logits, history);
        let token = self.choose(logits);
        self.sampled(logits, token)
    }

    /// The token from processed `logits`: the argmax when greedy, else one draw from
    /// [`Sampler::candidates`].
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() {
            return argmax(logits);
        }
        let cands = self.candidates(logits);
        match cands.is_empty() {
            true => argmax(logits),
            false => pick(&cands, self.draw()),
        }
    }

    /// Logit bias, the penalties and DRY applied to `logits` in place, as [`Sampler::sample`]
    /// applies them before choosing.
    pub fn process(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        for &(token, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        apply_penalties(logits, history, p);
        if let Some(dry) = &self.dry {
            dry.apply(logits, history);
        }
    }

    /// `token` with its log-probabilities under processed `logits` (when asked for).
    pub fn sampled(&self, logits: &[f32], token: u32) -> Sampled {
        let (logprob, top) = match self.params.top_logprobs {
            Some(n) => {
                let log_z = log_sum_exp(logits);
                let top = top_n(logits, n)
                    .into_iter()
                    .map(|(t, l)| (t, l - log_z))
                    .collect();
                (Some(logits[token as usize] - log_z), top)
            }
            None => (None, Vec::new()),
        };
        Sampled {
            token,
            logprob,
            top,
        }
    }

    /// The distribution a non-greedy draw picks from, given processed `logits`: top-k, top-p
    /// and min-p truncation, then the temperature; `(token, probability)` best first. Empty
    /// when no logit is finite.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let p = &self.params;
        // Candidates sorted by logit, best first, truncated by top-k.
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cands.is_empty() {
            return Vec::new();
        }
        let k = if p.top_k == 0 {
            cands.len()
        } else {
            p.top_k.min(cands.len())
        };
        if k < cands.len() {
            cands.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cands.truncate(k);
        }
        cands.sort_by(|a, b| b.1.total_cmp(&a.1));

        // Softmax at temperature 1 for top-p and min-p, as llama.cpp's chain orders them
        // before the temperature.
        let probs = softmax(cands.iter().map(|c| c.1), 1.0);
        let mut keep = cands.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        cands.truncate(keep.max(1));

        let probs = softmax(cands.iter().map(|c| c.1), p.temperature);
        cands.iter().map(|c| c.0).zip(probs).collect()
    }
}

/// The candidate that uniform draw `r` falls on (the last one if rounding leaves it short).
pub fn pick(cands: &[(u32, f64)], r: f64) -> u32 {
    let mut cum = 0.0;
    for &(token, q) in cands {
        cum += q;
        if r < cum {
            return token;
        }
    }
    cands.last().map_or(0, |c| c.0)
}

fn apply_penalties(logits: &mut [f32], history: &[u32], p: &SamplingParams) {
    let active =
        p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0;
    if !active || history.is_empty() {
        return;
    }
    let window = if p.penalty_last_n == 0 {
        history.len()
    } else {
        p.penalty_last_n.min(history.len())
    };
    let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for &t in &history[history.len() - window..] {
        *counts.entry(t).or_default() += 1;
    }
    for (&t, &count) in &counts {
        let Some(l) = logits.get_mut(t as usize) else {
            continue;
        };
        if p.repetition_penalty != 1.0 {
            *l = if *l > 0.0 {
                *l / p.repetition_penalty
            } else {
                *l * p.repetition_penalty
            };
        }
        *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
    }
}

/// The first index of the largest logit (ties go to the lower id, as llama.cpp's greedy does).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f64> {
    let t = f64::from(temperature.max(1e-6));
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.map(|l| ((l as f64 - max) / t).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let n = n.min(all.len());
    if n == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(n);
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, -1.0, 3.0, 0.5]
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&mut logits(), &[]).token, 1);
    }

    #[test]
    fn logit_bias_and_penalties_change_the_choice() {
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(5, 10.0)],
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits(), &[]).token, 5);
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        // Tokens 1 and 4 (logit 3) were seen: 3/2 = 1.5 < 2.
        assert_eq!(s.sample(&mut logits(), &[1, 4]).token, 2);
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 1.5,
            frequency_penalty: 0.1,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits(), &[1]).token, 4);
    }

    #[test]
    fn dry_comes_after_the_other_penalties_and_changes_the_choice() {
        // History 1 2 4 1 2: the end "1 2" repeats, followed by 4 (2 long, allowed 2): 4's
        // logit 3 loses multiplier · base^0 = 1.5, so 1 (logit 2.5) wins.
        let dry = DryParams {
            multiplier: 1.5,
            base: 1.75,
            allowed_length: 2,
            penalty_last_n: None,
            sequence_breakers: vec![],
        };
        let mut logits = vec![1.0, 2.5, 2.0, -1.0, 3.0, 0.5];
        let mut s = Sampler::new(SamplingParams {
            dry: Some(dry.clone()),
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits, &[1, 2, 4, 1, 2]).token, 1);
        assert_eq!(logits[4], 1.5);
        // After a repetition penalty of 2 (4: 3 → 1.5), DRY takes 1.5 more: 0.
        let mut logits = vec![1.0, 2.5, 2.0, -1.0, 3.0, 0.5];
        let mut s = Sampler::new(SamplingParams {
            dry: Some(dry),
            repetition_penalty: 2.0,
            ..Default::default()
        });
        s.sample(&mut logits, &[1, 2, 4, 1, 2]);
        assert_eq!(logits[4], 0.0);
    }

    #[test]
    fn a_seed_reproduces_and_truncation_limits_the_choices() {
        let params = SamplingParams {
            temperature: 1.0,
            seed: Some(42),
            ..Default::default()
        };
        let draw = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..200)
                .map(|_| s.sample(&mut logits(), &[]).token)
                .collect::<Vec<_>>()
        };
        let a = draw(params.clone());
        assert_eq!(a, draw(params.clone()));
        assert_ne!(
            a,
            draw(SamplingParams {
                seed: Some(43),
                ..params.clone()
            })
        );
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() >= 4);
        let top2 = draw(SamplingParams {
            top_k: 2,
            ..params.clone()
        });
        assert!(top2.iter().all(|&t| t == 1 || t == 4));
        let min_p = draw(SamplingParams {
            min_p: 0.5,
            ..params.clone()
        });
        assert!(min_p.iter().all(|&t| t == 1 || t == 4 || t == 2)); // e^-1 = 0.37 < 0.5 drops 2
        assert!(min_p.iter().all(|&t| t != 2));
        let top_p = draw(SamplingParams {
            top_p: 0.5,
            ..params
        });
        assert!(top_p.iter().all(|&t| t == 1 || t == 4));
    }

    #[test]
    fn logprobs_are_normalised() {
        let mut s = Sampler::new(SamplingParams {
            top_logprobs: Some(3),
            ..Default::default()
        });
        let out = s.sample(&mut logits(), &[]);
        let total: f32 = logits()
            .iter()
            .map(|&l| (l - log_sum_exp(&logits())).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(
            out.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 4, 2]
        );
        assert_eq!(out.logprob, Some(out.top[0].1));
        assert!(out.top[0].1 < 0.0);
    }
}
