//! Callflow patterns: Kazoo's PCRE dialect, compiled with the `regex` crate.
//!
//! [`crate::pcre`] rewrites a pattern into `regex` syntax with PCRE's meaning (ASCII `\d \w \s
//! \b`, `$` before a final newline, literal braces) or says why it is refused. PCRE features
//! the crate does not have (look-around, back-references, possessive quantifiers, recursion)
//! and patterns PCRE itself rejects (a quantifier with nothing to repeat, as in `*55(\d+)`)
//! fail to compile, and the API rejects them with a 400 naming the reason and, for a stray
//! quantifier, the escaped pattern to use instead (see docs/compatibility.md): no
//! catastrophic backtracking can reach the routing path. Such patterns already in the store
//! (imported) are skipped at lookup, as Kazoo's `cf_flow` skips what `re:compile` refuses.

use regex::Regex;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Compiled-program size limit, so a small pattern cannot explode in memory.
const SIZE_LIMIT: usize = 1 << 20;
/// Limits for the routing engine's compiled form. A dialled number needs a few kilobytes
/// (`^\+?1?(\d{10})$` compiles to about 3 KiB); 64 KiB still takes a hundred-way alternation
/// of numbers, while `^(\d{0,9353})9NNNN$`, accepted before, cost 2.7 MB resident.
const ROUTING_NFA_LIMIT: usize = 64 * 1024;
const ROUTING_ONEPASS_LIMIT: usize = 64 * 1024;
const ROUTING_DFA_LIMIT: usize = 64 * 1024;
/// Lazy-DFA cache per searching thread.
const ROUTING_CACHE_CAPACITY: usize = 64 * 1024;

/// A pattern compiled for routing, with the memory it holds (for the route cache's budget).
#[derive(Debug)]
pub struct RoutingRegex {
    pub regex: regex_automata::meta::Regex,
    /// Heap bytes: the compiled engines plus one search cache as a number search fills it.
    pub memory: usize,
}

/// Compile a callflow pattern for the routing engine: Kazoo's dialect (as [`compile`]) within
/// the routing size limits. The API refuses on save what this refuses, so every stored
/// pattern routes.
pub fn compile_routing(pattern: &str) -> Result<RoutingRegex, PatternError> {
    use regex_automata::meta;
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(PatternError(format!(
            "pattern longer than {MAX_PATTERN_LEN} bytes"
        )));
    }
    let translated = translate(pattern)?;
    let config = meta::Config::new()
        .nfa_size_limit(Some(ROUTING_NFA_LIMIT))
        .onepass_size_limit(Some(ROUTING_ONEPASS_LIMIT))
        .dfa_size_limit(Some(ROUTING_DFA_LIMIT))
        .hybrid_cache_capacity(ROUTING_CACHE_CAPACITY);
    let regex = meta::Regex::builder()
        .configure(config)
        .build(&translated)
        .map_err(|e| PatternError(describe_build(&e, pattern)))?;
    // Fill one cache the way a lookup does, to count what searching costs.
    let mut cache = regex.create_cache();
    let mut caps = regex.create_captures();
    for probe in ["+14155550100", "0123456789", "*72"] {
        regex.search_captures_with(&mut cache, &regex_automata::Input::new(probe), &mut caps);
    }
    let memory = regex.memory_usage() + cache.memory_usage();
    Ok(RoutingRegex { regex, memory })
}

fn describe_build(e: &regex_automata::meta::BuildError, pattern: &str) -> String {
    if e.size_limit().is_some() {
        return "pattern too large once compiled (a dialled number needs far less)".to_string();
    }
    match e.syntax_error() {
        Some(syntax) => describe_syntax(&syntax.to_string(), pattern),
        None => describe_syntax(&e.to_string(), pattern),
    }
}

fn describe_syntax(text: &str, pattern: &str) -> String {
    let lookaround = ["(?=", "(?!", "(?<=", "(?<!"]
        .iter()
        .any(|t| pattern.contains(t));
    let backref = pattern
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'\\' && (b'1'..=b'9').contains(&w[1]));
    if lookaround {
        "look-around assertions are not supported".to_string()
    } else if backref {
        "back-references are not supported".to_string()
    } else {
        text.lines().last().unwrap_or(text).trim().to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

/// Compile a callflow pattern with Kazoo's (PCRE) semantics.
pub fn compile(pattern: &str) -> Result<Regex, PatternError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(PatternError(format!(
            "pattern longer than {MAX_PATTERN_LEN} bytes"
        )));
    }
    let translated = translate(pattern)?;
    regex::RegexBuilder::new(&translated)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| PatternError(describe(&e, pattern)))
}

/// Most distinct patterns [`cached`] keeps before starting over.
const CACHE_CAP: usize = 512;

/// Process-wide cache of [`compile`] results, for regexes read from documents at run time
/// (the engine's check_cid, menu hunt rules, list entries, metaflow patterns), so a
/// simulation step never compiles a regex it has seen before.
static CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Option<std::sync::Arc<Regex>>>>,
> = std::sync::LazyLock::new(Default::default);

/// [`compile`] through the cache; `None` when the pattern does not compile. Shared behind an
/// `Arc`: cloning a `Regex` itself would give the clone a fresh (empty) search-cache pool.
pub fn cached(pattern: &str) -> Option<std::sync::Arc<Regex>> {
    // A poisoned lock only means a panic elsewhere mid-insert; the map is still a valid cache.
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(pattern) {
        return hit.clone();
    }
    if cache.len() >= CACHE_CAP {
        cache.clear();
    }
    let compiled = compile(pattern).ok().map(std::sync::Arc::new);
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

fn describe(e: &regex::Error, pattern: &str) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => "pattern too large once compiled".to_string(),
        regex::Error::Syntax(s) => describe_syntax(s, pattern),
        other => describe_syntax(&other.to_string(), pattern),
    }
}

/// The pattern in `regex` syntax (see [`crate::pcre`]), or why PCRE or we refuse it.
fn translate(pattern: &str) -> Result<String, PatternError> {
    crate::pcre::translate(pattern).map_err(|e| PatternError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_class_is_ascii_only() {
        let re = compile(r"^\d+$").unwrap();
        assert!(re.is_match("0123"));
        assert!(
            !re.is_match("١٢٣"),
            "Arabic-Indic digits are not PCRE digits"
        );
        let re = compile(r"^[\d*#]+$").unwrap();
        assert!(re.is_match("*12#"));
        assert!(!re.is_match("١"));
    }

    #[test]
    fn kazoo_patterns_compile() {
        for p in [
            r"^\*7([0-9]{2,})$",
            r"^\+?1?(\d{10})$",
            r"^(?<ext>2\d{3})$",
            r"^(?P<x>\d+)$",
            r"^011(\d*)$",
            "no_match",
        ] {
            compile(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn a_star_with_nothing_to_repeat_is_refused_with_the_fix() {
        assert_eq!(
            compile(r"*55(\d+)").unwrap_err().0,
            r"nothing to repeat at offset 0: escape it: \*55(\d+)"
        );
        assert_eq!(
            compile_routing(r"^*9").unwrap_err().0,
            r"nothing to repeat at offset 1: escape it: ^\*9"
        );
        let re = compile(r"^\*55(\d+)$").unwrap();
        assert_eq!(
            re.captures("*55123").unwrap().get(1).unwrap().as_str(),
            "123"
        );
        assert!(
            compile(r"^1*$").unwrap().is_match("111"),
            "ordinary quantifiers are untouched"
        );
        assert!(!compile(r"^1*$").unwrap().is_match("*"));
    }

    #[test]
    fn unsupported_features_say_why() {
        assert_eq!(
            compile(r"^(?=1)\d+$").unwrap_err().0,
            "look-around assertions are not supported"
        );
        assert_eq!(
            compile(r"^(\d)\1$").unwrap_err().0,
            "back-references are not supported"
        );
        assert!(compile(r"^(\d+$").is_err());
    }
}
