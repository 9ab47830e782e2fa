//! An account's routing snapshot: immutable, cheap to share, cheap to update.
//!
//! Lookup follows Kazoo's `cf_flow` exactly:
//! 1. exact number;
//! 2. patterns: every pattern that matches is scored by its longest captured group (the whole
//!    match when it has no group); the first best wins and a later one replaces it only when
//!    strictly longer. Patterns are tried in Kazoo's order: descending by pattern text (bytes),
//!    then descending by callflow id, so on a tie the pattern that sorts last wins;
//! 3. `no_match`: when nothing matched and the number is digits with at most one leading `+`,
//!    the callflow holding the literal number `no_match` (only for callers allowed to use it).
//!
//! Speed comes from not trying every pattern: anchored patterns are indexed by the literal
//! prefixes every match must start with (extracted from the parsed regex), so a lookup only
//! runs the patterns whose prefix the number starts with, plus the few patterns without a
//! usable prefix. Regexes compile lazily, on first use, and compiled regexes are shared by
//! every later snapshot.
//!
//! Updates never copy the big number map: a snapshot is a `base` (built in one go) plus a small
//! `overlay` of callflows replaced since, which is folded into a new base once it grows.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

// hashbrown's default hasher (foldhash) is several times faster than std's SipHash on short
// keys and is seeded per process, so crafted numbers cannot be aimed at a bucket.
use hashbrown::{HashMap, HashSet};

use regex_automata::meta::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Look;

use super::numbers::NumberMap;
use super::pattern::{self, RoutingRegex};

/// How the winner was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Number,
    Pattern,
    NoMatch,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Number => "number",
            MatchKind::Pattern => "pattern",
            MatchKind::NoMatch => "no_match",
        }
    }
}

/// One pattern that matched the number, with what it captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternHit {
    pub pattern: String,
    pub callflow_id: String,
    /// The longest captured group (or the whole match for a pattern without groups).
    pub capture: String,
}

/// The routing decision for one number. It borrows from the snapshot and the dialled number,
/// so the exact-number path allocates and copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub callflow_id: &'a str,
    pub kind: MatchKind,
    /// The number, pattern, or `no_match` that matched.
    pub value: &'a str,
    pub capture_group: Option<String>,
    pub capture_groups: BTreeMap<String, String>,
    /// Every pattern that matched, in the order tried (only when asked for).
    pub hits: Vec<PatternHit>,
    pub reason: Cow<'static, str>,
}

/// A pattern with its compiled regex and the prefixes every match starts with.
#[derive(Debug)]
pub struct PatternRule {
    pub pattern: Arc<str>,
    pub callflow_id: Arc<str>,
    /// `None`: no usable literal prefix, the rule is tried for every number.
    prefixes: Option<Vec<Box<[u8]>>>,
    /// Compiled when the rule is made (snapshot builds run off the async workers); `None` if
    /// it does not compile (Kazoo skips those).
    compiled: Option<RoutingRegex>,
}

/// Longest literal prefix kept in the index.
const MAX_PREFIX: usize = 16;
/// Most prefixes kept per pattern before giving up on indexing it.
const MAX_PREFIXES_PER_PATTERN: usize = 256;

impl PatternRule {
    pub fn new(pattern: &str, callflow_id: &str) -> Self {
        Self {
            prefixes: literal_prefixes(pattern),
            pattern: Arc::from(pattern),
            callflow_id: Arc::from(callflow_id),
            compiled: match pattern::compile_routing(pattern) {
                Ok(compiled) => Some(compiled),
                Err(error) => {
                    // Saved before today's limits, or imported: Kazoo skips those too.
                    tracing::warn!(pattern, callflow_id, %error, "stored pattern cannot route; skipped");
                    None
                }
            },
        }
    }

    /// The compiled regex; `None` if it does not compile (Kazoo skips those).
    pub fn regex(&self) -> Option<&Regex> {
        self.compiled.as_ref().map(|c| &c.regex)
    }

    /// Whether the rule is tried for every number (no literal prefix to index it by).
    pub fn is_unindexed(&self) -> bool {
        self.prefixes.is_none()
    }

    /// Memory held: the compiled engines and a search cache (measured when compiled), the
    /// text, the prefixes, and allocator and bookkeeping overhead (calibrated against
    /// resident memory by `tests/route_memory.rs`).
    fn approx_bytes(&self) -> usize {
        const OVERHEAD: usize = 4096;
        OVERHEAD
            + self.compiled.as_ref().map(|c| c.memory).unwrap_or(0)
            + self.pattern.len()
            + self
                .prefixes
                .as_ref()
                .map(|p| p.iter().map(|x| x.len() + 24).sum())
                .unwrap_or(0)
    }
}

/// Prefix literals of an anchored pattern, or `None` when it cannot be indexed.
fn literal_prefixes(pattern: &str) -> Option<Vec<Box<[u8]>>> {
    let translated = crate::pcre::translate(pattern).ok()?;
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&translated)
        .ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let mut extractor = Extractor::new();
    extractor
        .kind(ExtractKind::Prefix)
        .limit_class(1)
        .limit_repeat(4)
        .limit_literal_len(MAX_PREFIX)
        .limit_total(MAX_PREFIXES_PER_PATTERN);
    let seq = extractor.extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| Box::from(l.as_bytes())).collect())
}

/// The winning rule, its capture, its non-empty named captures, and (when explaining) every
/// pattern that matched.
pub type PatternWin<'a> = (
    &'a PatternRule,
    String,
    BTreeMap<String, String>,
    Vec<PatternHit>,
);

/// Patterns in Kazoo's order, with the prefix index.
#[derive(Debug, Default)]
pub struct PatternSet {
    rules: Vec<Arc<PatternRule>>,
    /// prefix -> positions in `rules`.
    index: HashMap<Box<[u8]>, Vec<u32>>,
    /// Positions of rules without a usable prefix.
    always: Vec<u32>,
    longest_prefix: usize,
}

impl PatternSet {
    pub fn new(mut rules: Vec<Arc<PatternRule>>) -> Self {
        rules.sort_by(|a, b| {
            b.pattern
                .as_bytes()
                .cmp(a.pattern.as_bytes())
                .then_with(|| b.callflow_id.cmp(&a.callflow_id))
        });
        let mut index: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut always = Vec::new();
        let mut longest_prefix = 0;
        for (pos, rule) in rules.iter().enumerate() {
            match &rule.prefixes {
                Some(prefixes) => {
                    for p in prefixes {
                        longest_prefix = longest_prefix.max(p.len());
                        let slot = index.entry(p.clone()).or_default();
                        if slot.last() != Some(&(pos as u32)) {
                            slot.push(pos as u32);
                        }
                    }
                }
                None => always.push(pos as u32),
            }
        }
        Self {
            rules,
            index,
            always,
            longest_prefix,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Arc<PatternRule>] {
        &self.rules
    }

    /// Positions of the rules that can match `number`, in Kazoo's order.
    fn candidates(&self, number: &str) -> Vec<u32> {
        let bytes = number.as_bytes();
        let mut out = self.always.clone();
        for len in 1..=bytes.len().min(self.longest_prefix) {
            if let Some(positions) = self.index.get(&bytes[..len]) {
                out.extend_from_slice(positions);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kazoo's longest-capture rule over the candidate patterns.
    pub fn best(&self, number: &str, explain: bool) -> Option<PatternWin<'_>> {
        let mut best: Option<(usize, u32, String)> = None;
        let mut hits = Vec::new();
        let mut caps = None;
        for pos in self.candidates(number) {
            let rule = &self.rules[pos as usize];
            let Some(re) = rule.regex() else { continue };
            let caps = caps.insert(re.create_captures());
            re.captures(number, caps);
            if !caps.is_match() {
                continue;
            }
            let text = |span: regex_automata::Span| &number[span.range()];
            let capture = if caps.group_len() > 1 {
                let mut longest = "";
                for group in (1..caps.group_len()).filter_map(|i| caps.get_group(i)) {
                    if group.len() > longest.len() {
                        longest = text(group);
                    }
                }
                longest
            } else {
                caps.get_match().map(|m| text(m.span())).unwrap_or_default()
            };
            if explain {
                hits.push(PatternHit {
                    pattern: rule.pattern.to_string(),
                    callflow_id: rule.callflow_id.to_string(),
                    capture: capture.to_string(),
                });
            }
            if best
                .as_ref()
                .map(|(len, _, _)| capture.len() > *len)
                .unwrap_or(true)
            {
                best = Some((capture.len(), pos, capture.to_string()));
            }
        }
        let (_, pos, capture) = best?;
        let rule = self.rules[pos as usize].as_ref();
        let mut named = BTreeMap::new();
        if let Some(re) = rule.regex() {
            let mut caps = re.create_captures();
            re.captures(number, &mut caps);
            if caps.is_match() {
                let names = re
                    .group_info()
                    .pattern_names(regex_automata::PatternID::ZERO);
                for name in names.flatten() {
                    if let Some(span) = caps.get_group_by_name(name).filter(|s| !s.is_empty()) {
                        named.insert(name.to_string(), number[span.range()].to_string());
                    }
                }
            }
        }
        Some((rule, capture, named, hits))
    }

    fn approx_bytes(&self) -> usize {
        self.rules.iter().map(|r| r.approx_bytes()).sum::<usize>() + self.index.len() * 64
    }
}

/// Numbers built in one go: number -> index into `ids` (see [`NumberMap`]).
#[derive(Debug, Default)]
struct Base {
    numbers: NumberMap,
    ids: Vec<Arc<str>>,
}

/// Callflows replaced since the base was built: their complete current numbers.
#[derive(Debug, Default, Clone)]
struct Overlay {
    numbers: HashMap<Arc<str>, Arc<str>>,
    replaced: HashSet<Arc<str>>,
}

/// Overlay size (callflows) past which an update folds everything into a new base.
const COMPACT_AFTER: usize = 512;

/// One account's routing snapshot.
#[derive(Debug)]
pub struct RouteTable {
    base: Arc<Base>,
    overlay: Overlay,
    patterns: Arc<PatternSet>,
    weight: u64,
}

/// A callflow's routing keys, as written.
#[derive(Debug, Clone, Default)]
pub struct CallflowKeys {
    pub callflow_id: String,
    pub numbers: Vec<String>,
    pub patterns: Vec<String>,
}

impl RouteTable {
    /// Builds a snapshot from `(number, callflow id)` and `(pattern, callflow id)` pairs.
    pub fn build(
        numbers: impl IntoIterator<Item = (String, String)>,
        patterns: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
        let mut entries = Vec::new();
        for (number, id) in numbers {
            let next = ids.len() as u32;
            let idx = *ids.entry(Arc::from(id.as_str())).or_insert(next);
            entries.push((number, idx));
        }
        let mut base = Base {
            numbers: NumberMap::build(entries),
            ids: vec![Arc::from(""); ids.len()],
        };
        for (id, idx) in ids {
            base.ids[idx as usize] = id;
        }
        let rules = patterns
            .into_iter()
            .map(|(p, id)| Arc::new(PatternRule::new(&p, &id)))
            .collect();
        Self::assemble(
            Arc::new(base),
            Overlay::default(),
            Arc::new(PatternSet::new(rules)),
        )
    }

    fn assemble(base: Arc<Base>, overlay: Overlay, patterns: Arc<PatternSet>) -> Self {
        let weight = (base.numbers.approx_bytes()
            + overlay.numbers.len() * 96
            + base.ids.len() * 56
            + patterns.approx_bytes()
            + 1024) as u64;
        Self {
            base,
            overlay,
            patterns,
            weight,
        }
    }

    /// Approximate memory held, in bytes (cache accounting).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    pub fn number_count(&self) -> usize {
        self.base.numbers.len() + self.overlay.numbers.len()
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Every pattern rule, in the order Kazoo tries them (an earlier rule wins a tie).
    pub fn pattern_rules(&self) -> &[Arc<PatternRule>] {
        self.patterns.rules()
    }

    /// Every pattern that matches `number`, in the order tried, with its capture (whether or
    /// not an exact number takes it first).
    pub fn pattern_hits(&self, number: &str) -> Vec<PatternHit> {
        self.patterns
            .best(number, true)
            .map(|(_, _, _, hits)| hits)
            .unwrap_or_default()
    }

    /// Patterns tried for every number (no literal prefix to index them by).
    pub fn unindexed_patterns(&self) -> usize {
        self.patterns.always.len()
    }

    /// The callflow holding exactly `number`.
    pub fn number(&self, number: &str) -> Option<&Arc<str>> {
        if self.overlay.replaced.is_empty() {
            return self
                .base
                .numbers
                .get(number)
                .map(|i| &self.base.ids[i as usize]);
        }
        if let Some(id) = self.overlay.numbers.get(number) {
            return Some(id);
        }
        let id = &self.base.ids[self.base.numbers.get(number)? as usize];
        (!self.overlay.replaced.contains(id)).then_some(id)
    }

    /// Kazoo's routing decision for `number`. `allow_no_match` says whether the caller may
    /// reach the `no_match` callflow (Kazoo allows it only for calls from its own endpoints).
    pub fn lookup<'a>(
        &'a self,
        number: &'a str,
        allow_no_match: bool,
        explain: bool,
    ) -> Option<Route<'a>> {
        let route = self.resolve(number, allow_no_match, explain)?;
        // Kazoo refuses any callflow that holds `no_match` to callers not allowed to use it,
        // however it was reached.
        if !allow_no_match && self.number("no_match").map(|id| &**id) == Some(route.callflow_id) {
            return None;
        }
        Some(route)
    }

    fn resolve<'a>(
        &'a self,
        number: &'a str,
        allow_no_match: bool,
        explain: bool,
    ) -> Option<Route<'a>> {
        if number.is_empty() {
            return None;
        }
        if let Some(id) = self.number(number) {
            return Some(Route {
                callflow_id: id,
                kind: MatchKind::Number,
                value: number,
                capture_group: None,
                capture_groups: BTreeMap::new(),
                hits: Vec::new(),
                reason: Cow::Borrowed(
                    "exact number match (numbers are checked before any pattern)",
                ),
            });
        }
        if number == "no_match" {
            return None;
        }
        if let Some((rule, capture, named, hits)) = self.patterns.best(number, explain) {
            let reason = match hits.len() {
                // Not explaining: no list of hits was kept.
                0 => Cow::Borrowed("the pattern with the longest capture"),
                1 => Cow::Borrowed("the only pattern that matched"),
                n => Cow::Owned(format!(
                    "{n} patterns matched; this one captured the longest group ({} characters); on equal length the pattern sorting last wins",
                    capture.len()
                )),
            };
            return Some(Route {
                callflow_id: &rule.callflow_id,
                kind: MatchKind::Pattern,
                value: &rule.pattern,
                capture_group: Some(capture).filter(|c| !c.is_empty()),
                capture_groups: named,
                hits,
                reason,
            });
        }
        let digits = number.strip_prefix('+').unwrap_or(number);
        if allow_no_match && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(id) = self.number("no_match") {
                return Some(Route {
                    callflow_id: id,
                    kind: MatchKind::NoMatch,
                    value: "no_match",
                    capture_group: None,
                    capture_groups: BTreeMap::new(),
                    hits: Vec::new(),
                    reason: Cow::Borrowed("no number or pattern matched and the number is all digits: the no_match callflow"),
                });
            }
        }
        None
    }

    /// A new snapshot where each of `changes` replaces everything its callflow held (an empty
    /// change removes the callflow). The current snapshot is left as it is.
    pub fn with_changes(&self, changes: &[CallflowKeys]) -> Self {
        let mut overlay = self.overlay.clone();
        let mut touched: HashSet<Arc<str>> = HashSet::new();
        let mut new_patterns: Vec<(Arc<str>, Vec<String>)> = Vec::new();
        for keys in changes {
            let id: Arc<str> = Arc::from(keys.callflow_id.as_str());
            overlay.numbers.retain(|_, holder| *holder != id);
            for n in &keys.numbers {
                overlay.numbers.insert(Arc::from(n.as_str()), id.clone());
            }
            overlay.replaced.insert(id.clone());
            new_patterns.retain(|(holder, _)| *holder != id);
            new_patterns.push((id.clone(), keys.patterns.clone()));
            touched.insert(id);
        }
        if touched.is_empty() {
            return Self::assemble(self.base.clone(), overlay, self.patterns.clone());
        }
        // Patterns: keep every untouched rule (and its compiled regex), add the new ones.
        let mut rules: Vec<Arc<PatternRule>> = self
            .patterns
            .rules()
            .iter()
            .filter(|r| !touched.contains(&r.callflow_id))
            .cloned()
            .collect();
        let previous: HashMap<(&str, &str), &Arc<PatternRule>> = self
            .patterns
            .rules()
            .iter()
            .map(|r| ((r.pattern.as_ref(), r.callflow_id.as_ref()), r))
            .collect();
        for (id, patterns) in &new_patterns {
            for p in patterns {
                match previous.get(&(p.as_str(), id.as_ref())) {
                    Some(rule) => rules.push(Arc::clone(rule)),
                    None => rules.push(Arc::new(PatternRule::new(p, id))),
                }
            }
        }
        let patterns = Arc::new(PatternSet::new(rules));
        if overlay.replaced.len() > COMPACT_AFTER {
            return Self::assemble(
                Arc::new(self.compact(&overlay)),
                Overlay::default(),
                patterns,
            );
        }
        Self::assemble(self.base.clone(), overlay, patterns)
    }

    /// Base and overlay folded into a new base.
    fn compact(&self, overlay: &Overlay) -> Base {
        let mut ids: Vec<Arc<str>> = Vec::new();
        let mut id_index: HashMap<Arc<str>, u32> = HashMap::new();
        let mut numbers = Vec::with_capacity(self.base.numbers.len() + overlay.numbers.len());
        let mut intern = |id: &Arc<str>| -> u32 {
            *id_index.entry(id.clone()).or_insert_with(|| {
                ids.push(id.clone());
                (ids.len() - 1) as u32
            })
        };
        for (n, idx) in self.base.numbers.iter() {
            let id = &self.base.ids[idx as usize];
            if !overlay.replaced.contains(id) {
                numbers.push((n, intern(id)));
            }
        }
        for (n, id) in &overlay.numbers {
            numbers.push((n.to_string(), intern(id)));
        }
        Base {
            numbers: NumberMap::build(numbers),
            ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(numbers: &[(&str, &str)], patterns: &[(&str, &str)]) -> RouteTable {
        RouteTable::build(
            numbers.iter().map(|(n, i)| (n.to_string(), i.to_string())),
            patterns.iter().map(|(p, i)| (p.to_string(), i.to_string())),
        )
    }

    fn kazoo_example() -> RouteTable {
        table(
            &[
                ("1000", "exact"),
                ("+14158867900", "exact2"),
                ("no_match", "fallback"),
            ],
            &[
                (r"^\*7([0-9]{2,})$", "star7"),
                (r"^\+?1?(\d{10})$", "us"),
                (r"^(?<ext>2\d{3})$", "ext"),
            ],
        )
    }

    #[test]
    fn spec_examples() {
        let t = kazoo_example();
        let r = t.lookup("1000", true, false).unwrap();
        assert_eq!((r.callflow_id, r.kind), ("exact", MatchKind::Number));
        let r = t.lookup("*7101", true, false).unwrap();
        assert_eq!(
            (r.callflow_id, r.capture_group.as_deref()),
            ("star7", Some("101"))
        );
        let r = t.lookup("+14155550000", true, false).unwrap();
        assert_eq!(
            (r.callflow_id, r.capture_group.as_deref()),
            ("us", Some("4155550000"))
        );
        let r = t.lookup("2001", true, false).unwrap();
        assert_eq!(r.callflow_id, "ext");
        assert_eq!(r.capture_group.as_deref(), Some("2001"));
        assert_eq!(
            r.capture_groups.get("ext").map(String::as_str),
            Some("2001")
        );
        let r = t.lookup("5551234", true, false).unwrap();
        assert_eq!((r.callflow_id, r.kind), ("fallback", MatchKind::NoMatch));
        assert!(
            t.lookup("5551234", false, false).is_none(),
            "no_match only for allowed callers"
        );
        assert!(t.lookup("*99", true, false).is_none());
        assert!(
            t.lookup("no_match", true, false).is_some(),
            "the literal number is an exact match"
        );
        let shared = table(&[("no_match", "f"), ("3000", "f")], &[]);
        assert!(shared.lookup("3000", true, false).is_some());
        assert!(
            shared.lookup("3000", false, false).is_none(),
            "a no_match callflow is refused however it is reached"
        );
        assert!(t.lookup("", true, false).is_none());
    }

    #[test]
    fn plus_prefix_is_stripped_only_once_for_no_match() {
        let t = table(&[("no_match", "f")], &[]);
        assert!(t.lookup("+123", true, false).is_some());
        assert!(
            t.lookup("+", true, false).is_some(),
            "empty digits count as all digits"
        );
        assert!(t.lookup("++123", true, false).is_none());
        assert!(t.lookup("12a", true, false).is_none());
    }

    #[test]
    fn longest_capture_wins_and_ties_go_to_the_pattern_sorting_last() {
        let t = table(
            &[],
            &[
                (r"^(\d{3})\d*$", "three"),
                (r"^\d(\d{5})$", "five"),
                (r"^(\d{5})\d$", "five_b"),
            ],
        );
        let r = t.lookup("123456", true, true).unwrap();
        // "^\d(\d{5})$" sorts after "^(\d{5})\d$" bytewise ('\' > '('), so it is tried first and kept.
        assert_eq!(r.callflow_id, "five");
        assert_eq!(r.hits.len(), 3);
        assert_eq!(r.hits[0].pattern, r"^\d(\d{5})$");
    }

    #[test]
    fn patterns_without_groups_score_the_whole_match_and_unanchored_patterns_work() {
        let t = table(&[], &[("555", "plain"), (r"^(5)", "one")]);
        let r = t.lookup("x5551", true, false).unwrap();
        assert_eq!(r.callflow_id, "plain");
        assert_eq!(r.capture_group.as_deref(), Some("555"));
    }

    #[test]
    fn empty_captures_are_left_out() {
        let t = table(&[], &[(r"^(?<opt>\d*)\*(?<code>\d*)$", "f")]);
        let r = t.lookup("*", true, false).unwrap();
        assert_eq!(r.capture_group, None);
        assert!(r.capture_groups.is_empty());
        let r = t.lookup("*12", true, false).unwrap();
        assert_eq!(r.capture_groups.len(), 1);
        assert_eq!(r.capture_groups["code"], "12");
    }

    #[test]
    fn changes_replace_a_callflow_without_rebuilding() {
        let t = table(&[("1000", "a"), ("1001", "b")], &[(r"^9(\d+)$", "a")]);
        let keys = CallflowKeys {
            callflow_id: "a".into(),
            numbers: vec!["2000".into()],
            patterns: vec![],
        };
        let t2 = t.with_changes(&[keys]);
        assert!(t2.lookup("1000", false, false).is_none());
        assert_eq!(t2.lookup("2000", false, false).unwrap().callflow_id, "a");
        assert_eq!(t2.lookup("1001", false, false).unwrap().callflow_id, "b");
        assert!(t2.lookup("91", false, false).is_none());
        // The original snapshot is untouched.
        assert_eq!(t.lookup("1000", false, false).unwrap().callflow_id, "a");
    }

    #[test]
    fn compaction_keeps_every_route() {
        let mut t = table(&[("1", "keep")], &[]);
        for i in 0..(COMPACT_AFTER + 10) {
            let keys = CallflowKeys {
                callflow_id: format!("cf{i}"),
                numbers: vec![format!("n{i}")],
                patterns: vec![],
            };
            t = t.with_changes(&[keys]);
        }
        assert!(t.overlay.replaced.len() < COMPACT_AFTER);
        assert_eq!(t.lookup("1", false, false).unwrap().callflow_id, "keep");
        for i in 0..(COMPACT_AFTER + 10) {
            assert_eq!(
                t.lookup(&format!("n{i}"), false, false)
                    .unwrap()
                    .callflow_id,
                format!("cf{i}")
            );
        }
    }

    #[test]
    fn prefixes_are_extracted_from_anchored_patterns() {
        assert_eq!(
            literal_prefixes(r"^\+1415555(\d{4})$").unwrap(),
            vec![Box::from(&b"+1415555"[..])]
        );
        assert!(literal_prefixes(r"555").is_none(), "unanchored");
        assert!(literal_prefixes(r"^.*$").is_none());
        let p = literal_prefixes(r"^(2\d{3})$").unwrap();
        assert!(p.iter().all(|l| l.starts_with(b"2")));
    }
}
