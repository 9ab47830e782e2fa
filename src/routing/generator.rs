//! Realistic account patterns for benchmarks and tests (not part of the API): DID blocks,
//! feature codes, international prefixes, extension ranges, named-group catch-alls, and the
//! few broad patterns every real account has. Shared by `benches/routing.rs` and the routing
//! analysis tests, so both measure the same shapes.

use rand::rngs::StdRng;
use rand::Rng;

/// `n` distinct patterns (plus three broad ones) as `(pattern, callflow id)`, each with a
/// number it should route.
pub fn realistic_patterns(rng: &mut StdRng, n: usize) -> (Vec<(String, String)>, Vec<String>) {
    let mut patterns = Vec::with_capacity(n);
    let mut probes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while patterns.len() < n {
        let cf = format!("cf-pattern-{:03}", i % 100);
        let (p, probe) = match i % 10 {
            // DID blocks: +1 NPA NXX xxxx
            0..=5 => {
                let npa = rng.gen_range(201..990);
                let nxx = rng.gen_range(200..999);
                (
                    format!(r"^\+1{npa}{nxx}(\d{{4}})$"),
                    format!("+1{npa}{nxx}{:04}", rng.gen_range(0..10000)),
                )
            }
            // Feature codes with captures: *NN<digits>
            6 => {
                let code = rng.gen_range(0..1000);
                (
                    format!(r"^\*{code}([0-9]{{2,}})$"),
                    format!("*{code}{}", rng.gen_range(10..99999)),
                )
            }
            // International by country code
            7 => {
                let cc = rng.gen_range(20..9999);
                (
                    format!(r"^011{cc}(\d{{5,}})$"),
                    format!("011{cc}{}", rng.gen_range(100000..99999999)),
                )
            }
            // Extension ranges
            8 => {
                let lead = rng.gen_range(10..9999);
                (
                    format!(r"^({lead}\d{{2}})$"),
                    format!("{lead}{:02}", rng.gen_range(0..100)),
                )
            }
            // Catch-alls with named groups
            _ => {
                let pre = rng.gen_range(0..100000);
                (
                    format!(r"^(?<prefix>9{pre})(?<rest>\d+)$"),
                    format!("9{pre}{}", rng.gen_range(1000..9999)),
                )
            }
        };
        if seen.insert(p.clone()) {
            patterns.push((p, cf));
            probes.push(probe);
        }
        i += 1;
    }
    // A few broad patterns every real account has.
    for (p, cf) in [
        (r"^\+?1?(\d{10})$", "cf-us"),
        (r"^011(\d*)$", "cf-intl"),
        (r"^\*(\d{2})$", "cf-star"),
    ] {
        if patterns.len() < n + 3 {
            patterns.push((p.to_string(), cf.to_string()));
        }
    }
    (patterns, probes)
}
