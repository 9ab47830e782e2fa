//! Callflow patterns: Kazoo's PCRE dialect, compiled with the `regex` crate.
//!
//! PCRE without the UTF flag treats `\d`, `\w`, `\s` (and their negations) as ASCII classes,
//! while the `regex` crate makes them Unicode-aware. The translator below rewrites those
//! escapes to ASCII before compiling; everything else is passed through unchanged. PCRE
//! features the crate does not have (look-around, back-references, possessive quantifiers,
//! recursion) fail to compile, and the API rejects such patterns with a 400 naming the reason
//! (see docs/compatibility.md): no catastrophic backtracking can reach the routing path.
//!
//! One leniency: a `*` with nothing to repeat (at the start, or right after `^`, `(` or `|`)
//! is read as a literal star. PCRE rejects such patterns, so Kazoo stores them and then never
//! routes them; they are always feature codes (`*55(\d+)` in Kazoo's own documentation), and
//! matching the star literally is what their authors meant.

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
    let translated = translate(pattern);
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
    let translated = translate(pattern);
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

/// Rewrites `\d \w \s \D \W \S` to their ASCII meaning, inside and outside classes.
pub(crate) fn translate(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Whether a quantifier here would have nothing to repeat.
    let mut at_item_start = true;
    while let Some(c) = chars.next() {
        let item_start_before = at_item_start;
        at_item_start = !in_class && matches!(c, '^' | '(' | '|');
        match c {
            '*' if !in_class && item_start_before => out.push_str("\\*"),
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let ascii = match next {
                    'd' => Some(("0-9", false)),
                    'w' => Some(("0-9A-Za-z_", false)),
                    's' => Some(("\\t\\n\\x0B\\x0C\\r ", false)),
                    'D' => Some(("0-9", true)),
                    'W' => Some(("0-9A-Za-z_", true)),
                    'S' => Some(("\\t\\n\\x0B\\x0C\\r ", true)),
                    _ => None,
                };
                match (ascii, in_class) {
                    (Some((set, false)), true) => out.push_str(set),
                    (Some((set, negated)), false) => {
                        out.push_str(if negated { "[^" } else { "[" });
                        out.push_str(set);
                        out.push(']');
                    }
                    // A negated class inside a class: keep PCRE's escape (Unicode there is
                    // harmless for dialled numbers).
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
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
    fn a_star_with_nothing_to_repeat_is_literal() {
        let re = compile(r"*55(\d+)").unwrap();
        assert_eq!(
            re.captures("*55123").unwrap().get(1).unwrap().as_str(),
            "123"
        );
        let re = compile(r"^*7(\d)$|^(*8)$").unwrap();
        assert!(re.is_match("*71") && re.is_match("*8"));
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
