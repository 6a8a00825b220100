//! CPU feature detection, done once per process.
//!
//! Kernels come in up to three tiers: a portable scalar reference, AVX2 (+FMA, F16C) and
//! AVX-512 (F, BW, VL, VNNI). The tier is chosen once at start-up from what the CPU offers and
//! may be lowered (never raised) with `MISTRALRS_ISA=scalar|avx2|avx512`, so tests and users can
//! force the scalar path.

use std::fmt;
use std::sync::OnceLock;

/// The instruction-set tier a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F + BW + VL + VNNI (on top of the AVX2 tier).
    Avx512Vnni,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512vnni" => Some(Isa::Avx512Vnni),
            _ => None,
        }
    }

    /// Every tier this CPU can run, lowest first: what tests compare against each other.
    pub fn available() -> Vec<Isa> {
        let best = cpu_features().best_isa();
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|isa| *isa <= best)
            .collect()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU reports, as far as our kernels care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    /// The VEX-encoded VNNI of Alder Lake and later (`vpdpbusd` on 256-bit registers).
    pub avxvnni: bool,
}

impl CpuFeatures {
    fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512vl: std::arch::is_x86_feature_detected!("avx512vl"),
                avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
                avxvnni: std::arch::is_x86_feature_detected!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures::default()
        }
    }

    /// The highest tier whose every feature is present.
    #[inline]
    pub fn best_isa(&self) -> Isa {
        let avx2 = self.avx2 && self.fma && self.f16c;
        if avx2 && self.avx512f && self.avx512bw && self.avx512vl && self.avx512vnni {
            Isa::Avx512Vnni
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Scalar
        }
    }

    /// Names of the present features, for logs and `inspect`.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            ("avx2", self.avx2),
            ("fma", self.fma),
            ("f16c", self.f16c),
            ("avx512f", self.avx512f),
            ("avx512bw", self.avx512bw),
            ("avx512vl", self.avx512vl),
            ("avx512vnni", self.avx512vnni),
            ("avxvnni", self.avxvnni),
        ];
        all.into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n)
            .collect()
    }
}

/// The features of this CPU, detected on first use. Inlined: kernels check it per call.
#[inline]
pub fn cpu_features() -> &'static CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    FEATURES.get_or_init(CpuFeatures::detect)
}

/// The tier kernels dispatch to: the best the CPU offers, lowered by `MISTRALRS_ISA` if set.
/// An unknown value, or one above what the CPU supports, falls back to the detected tier.
pub fn selected_isa() -> Isa {
    static SELECTED: OnceLock<Isa> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let best = cpu_features().best_isa();
        match std::env::var("MISTRALRS_ISA")
            .ok()
            .as_deref()
            .and_then(Isa::parse)
        {
            Some(asked) => asked.min(best),
            None => best,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_tiers_start_with_scalar_and_end_with_best() {
        let tiers = Isa::available();
        assert_eq!(tiers[0], Isa::Scalar);
        assert_eq!(*tiers.last().unwrap(), cpu_features().best_isa());
        assert!(selected_isa() <= cpu_features().best_isa());
    }

    #[test]
    fn parse_accepts_the_documented_names() {
        assert_eq!(Isa::parse("scalar"), Some(Isa::Scalar));
        assert_eq!(Isa::parse(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("avx512"), Some(Isa::Avx512Vnni));
        assert_eq!(Isa::parse("sse"), None);
    }

    #[test]
    fn best_isa_needs_every_feature_of_a_tier() {
        let mut f = CpuFeatures {
            avx2: true,
            fma: true,
            f16c: false,
            ..Default::default()
        };
        assert_eq!(f.best_isa(), Isa::Scalar);
        f.f16c = true;
        assert_eq!(f.best_isa(), Isa::Avx2);
        f.avx512f = true;
        f.avx512bw = true;
        f.avx512vl = true;
        assert_eq!(f.best_isa(), Isa::Avx2);
        f.avx512vnni = true;
        assert_eq!(f.best_isa(), Isa::Avx512Vnni);
    }
}
