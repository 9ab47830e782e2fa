//! Account-wide routing analysis: for every pattern of an account, a number it wins for (a
//! *witness*, confirmed by a real lookup in the account's snapshot) or why it never wins (every
//! number it matches is an exact number or goes to another pattern, with an example number);
//! and the extended "explain" of one lookup (every candidate, its capture, why the winner won).
//!
//! Owns the language work on patterns, done with the regex crates' own machinery: the parsed
//! HIR (to enumerate a small finite language exactly, to sample a large one, to bound what a
//! pattern captures) and dense DFAs (to find a shortest matching number, and to decide that
//! one pattern's numbers are all numbers of another). Every report says which method gave the
//! verdict and whether it is exact. Invariant: a witness is only ever reported after the real
//! lookup routed it to this pattern, and a "never wins" example is a number the pattern
//! matches that the lookup routes elsewhere. Must not touch HTTP or the store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind as DfaMatchKind};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::pcre::Dollar;
use serde::Serialize;
use serde_json::{json, Value};

use super::table::{MatchKind, PatternRule, RouteTable};

/// A finite language larger than this is sampled, not enumerated.
const ENUMERATION_LIMIT: usize = 256;
/// Losses to one pattern after which its dominance is checked with DFAs.
const PROOF_AFTER: usize = 2;
/// Random walks through a pattern's syntax tree when sampling.
const RANDOM_WALKS: usize = 10;
/// Longest extra repetition a sample adds to an unbounded repeat.
const MAX_EXTRA_REPEAT: u32 = 12;
/// DFA states (or state pairs) explored before a search gives up.
const DFA_SEARCH_LIMIT: usize = 50_000;
/// Size limit of one dense DFA built for the analysis.
const DFA_SIZE_LIMIT: usize = 2 << 20;
/// The characters numbers are written with, most likely first: a shortest witness is made of
/// digits whenever the pattern allows it. Searches are over printable ASCII only.
const ALPHABET: &[u8] =
    b"0123456789+*#ABCDabcd !\"$%&'(),-./:;<=>?@EFGHIJKLMNOPQRSTUVWXYZ[\\]^_`efghijklmnopqrstuvwxyz{|}~";

/// Who took a number instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Winner {
    /// `number` (an exact number of a callflow) or `pattern`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
    pub callflow_id: String,
}

/// Why a pattern never wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeverWins {
    /// `does_not_compile`, `no_number` (it matches no dialable number), `exact_numbers` (every
    /// number it matches is some callflow's exact number), `other_pattern` (another pattern
    /// takes them), `mixed` (both).
    pub reason: &'static str,
    pub message: String,
    /// A number the pattern matches that routes elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// Where `example` goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<Winner>,
}

/// One pattern's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternReport {
    pub pattern: String,
    pub callflow_id: String,
    /// A number this pattern wins for (checked by a lookup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub never_wins: Option<NeverWins>,
    /// What gave the verdict: `lookup` (a sampled or enumerated number, looked up),
    /// `enumeration` (every number of a small finite language looked up), `dfa_search` (a
    /// DFA proved no printable number matches), `dfa_inclusion` (a DFA proved every number it
    /// matches is matched by the winner, which always captures at least as much), `sampling`
    /// (a sample of its numbers all went elsewhere: not a proof), `compile`.
    pub method: &'static str,
    /// Whether the verdict is proved (a witness always is).
    pub exact: bool,
    /// Numbers tried.
    pub tried: usize,
}

/// Analyses every pattern of the snapshot, in Kazoo's order.
pub fn analyse(table: &RouteTable) -> Vec<PatternReport> {
    analyse_where(table, |_| true)
}

/// Analyses the patterns `keep` selects (one callflow's, for its lint).
pub fn analyse_where(
    table: &RouteTable,
    keep: impl Fn(&PatternRule) -> bool,
) -> Vec<PatternReport> {
    let mut analyser = Analyser {
        table,
        positions: table
            .pattern_rules()
            .iter()
            .enumerate()
            .map(|(i, r)| ((&*r.pattern, &*r.callflow_id), i))
            .collect(),
        dfas: HashMap::new(),
        hirs: HashMap::new(),
    };
    table
        .pattern_rules()
        .iter()
        .enumerate()
        .filter(|(_, r)| keep(r))
        .map(|(i, r)| analyser.one(i, r))
        .collect()
}

struct Analyser<'t> {
    table: &'t RouteTable,
    /// Rule position by (pattern, callflow id).
    positions: HashMap<(&'t str, &'t str), usize>,
    /// Dense DFAs by rule position (`None`: could not be built).
    dfas: HashMap<usize, Option<Arc<dense::DFA<Vec<u32>>>>>,
    hirs: HashMap<usize, Option<Arc<Hir>>>,
}

/// How a looked-up number went.
enum Went {
    Here,
    Elsewhere(Winner),
}

impl Analyser<'_> {
    fn hir(&mut self, pos: usize) -> Option<Arc<Hir>> {
        let rule = &self.table.pattern_rules()[pos];
        self.hirs
            .entry(pos)
            .or_insert_with(|| parse(&rule.pattern).map(Arc::new))
            .clone()
    }

    fn dfa(&mut self, pos: usize) -> Option<Arc<dense::DFA<Vec<u32>>>> {
        let rule = &self.table.pattern_rules()[pos];
        self.dfas
            .entry(pos)
            .or_insert_with(|| build_dfa(&rule.pattern).map(Arc::new))
            .clone()
    }

    fn lookup(&self, rule: &PatternRule, number: &str) -> Option<Went> {
        let route = self.table.lookup(number, true, false)?;
        if route.kind == MatchKind::Pattern
            && route.value == &*rule.pattern
            && route.callflow_id == &*rule.callflow_id
        {
            return Some(Went::Here);
        }
        Some(Went::Elsewhere(Winner {
            kind: match route.kind {
                MatchKind::Number => "number",
                MatchKind::Pattern => "pattern",
                MatchKind::NoMatch => "no_match",
            },
            value: route.value.to_string(),
            callflow_id: route.callflow_id.to_string(),
        }))
    }

    fn one(&mut self, pos: usize, rule: &PatternRule) -> PatternReport {
        let mut report = PatternReport {
            pattern: rule.pattern.to_string(),
            callflow_id: rule.callflow_id.to_string(),
            witness: None,
            never_wins: None,
            method: "lookup",
            exact: true,
            tried: 0,
        };
        let (Some(regex), Some(hir)) = (rule.regex(), self.hir(pos)) else {
            report.method = "compile";
            report.never_wins = Some(NeverWins {
                reason: "does_not_compile",
                message: match super::pattern::compile_routing(&rule.pattern) {
                    Err(e) => format!("the pattern does not compile ({e}); Kazoo skips it"),
                    Ok(_) => "the pattern does not compile; Kazoo skips it".into(),
                },
                example: None,
                winner: None,
            });
            return report;
        };
        let anchored = is_anchored(&hir);
        let enumerated = if anchored {
            enumerate(&hir, ENUMERATION_LIMIT)
        } else {
            None
        };
        let complete = enumerated.is_some();
        // Numbers are produced lazily: most patterns win with the first one.
        let mut candidates: Box<dyn Iterator<Item = String>> = match enumerated {
            Some(all) => Box::new(all.into_iter()),
            None => Box::new(Sampler::new(&hir, pos as u64)),
        };
        let mut method_if_lost = if complete { "enumeration" } else { "sampling" };
        let mut losses: Vec<(String, Winner)> = Vec::new();
        let mut proved = false;
        let mut any_matched = false;
        let mut dfa_asked = false;
        loop {
            let number = match candidates.next() {
                Some(n) => n,
                None if !any_matched && !complete && !dfa_asked => {
                    // Sampling found nothing the regex accepts (look-arounds in odd places):
                    // ask the DFA for a shortest number it accepts, which settles emptiness.
                    dfa_asked = true;
                    match self.dfa(pos).map(|d| shortest(&d)) {
                        Some(Some(s)) if !s.is_empty() => s,
                        Some(_) => {
                            method_if_lost = "dfa_search";
                            break;
                        }
                        None => break,
                    }
                }
                None => break,
            };
            if number.is_empty() || !regex.is_match(number.as_str()) {
                continue;
            }
            any_matched = true;
            report.tried += 1;
            match self.lookup(rule, &number) {
                Some(Went::Here) => {
                    report.witness = Some(number);
                    report.method = "lookup";
                    return report;
                }
                Some(Went::Elsewhere(w)) => losses.push((number, w)),
                None => {}
            }
            // The first few numbers all went to one other pattern: try to prove it takes
            // them all, which also saves looking up the rest.
            if !complete && losses.len() == PROOF_AFTER && self.one_pattern_beats(pos, &losses) {
                proved = true;
                break;
            }
        }
        report.method = if proved {
            "dfa_inclusion"
        } else {
            method_if_lost
        };
        report.exact = proved || method_if_lost != "sampling";
        let Some((example, winner)) = losses.first().cloned() else {
            report.never_wins = Some(NeverWins {
                reason: "no_number",
                message: if report.exact {
                    "no number of printable characters matches this pattern".into()
                } else {
                    "no sampled number matches this pattern".into()
                },
                example: None,
                winner: None,
            });
            return report;
        };
        let numbers = losses.iter().filter(|(_, w)| w.kind == "number").count();
        let reason = if numbers == losses.len() {
            "exact_numbers"
        } else if numbers == 0 {
            "other_pattern"
        } else {
            "mixed"
        };
        if !report.exact && losses.len() < PROOF_AFTER && self.one_pattern_beats(pos, &losses) {
            report.method = "dfa_inclusion";
            report.exact = true;
        }
        let how = if report.exact {
            "every number it matches"
        } else {
            "every sampled number it matches"
        };
        let message = match reason {
            "exact_numbers" => format!(
                "{how} is an exact number of a callflow (exact numbers win), e.g. {example} goes to callflow {}",
                winner.callflow_id
            ),
            "other_pattern" => format!(
                "{how} goes to another pattern, e.g. {example} goes to {} of callflow {}",
                winner.value, winner.callflow_id
            ),
            _ => format!(
                "{how} goes to an exact number or another pattern, e.g. {example} goes to {} {} of callflow {}",
                winner.kind, winner.value, winner.callflow_id
            ),
        };
        report.never_wins = Some(NeverWins {
            reason,
            message,
            example: Some(example),
            winner: Some(winner),
        });
        report
    }

    /// Whether every loss went to one other pattern that provably takes every number of `pos`.
    fn one_pattern_beats(&mut self, pos: usize, losses: &[(String, Winner)]) -> bool {
        let Some((_, winner)) = losses.first() else {
            return false;
        };
        if winner.kind != "pattern" || losses.iter().any(|(_, w)| w != winner) {
            return false;
        }
        let q = self
            .positions
            .get(&(winner.value.as_str(), winner.callflow_id.as_str()))
            .copied();
        q.is_some_and(|q| self.always_beaten_by(pos, q))
    }

    /// Whether rule `q` takes every number rule `p` matches: both anchored at both ends, every
    /// number of `p` is a number of `q` (DFA inclusion over printable ASCII), and `q` always
    /// captures at least as much (strictly more when `p` is tried first).
    fn always_beaten_by(&mut self, p: usize, q: usize) -> bool {
        let (Some(hp), Some(hq)) = (self.hir(p), self.hir(q)) else {
            return false;
        };
        if !is_anchored(&hp) || !is_anchored(&hq) {
            return false;
        }
        let (_, p_max) = capture_bounds(&hp);
        let (q_min, _) = capture_bounds(&hq);
        let Some(p_max) = p_max else { return false };
        let beats = if q < p { q_min >= p_max } else { q_min > p_max };
        if !beats {
            return false;
        }
        match (self.dfa(p), self.dfa(q)) {
            (Some(a), Some(b)) => included(&a, &b) == Some(true),
            _ => false,
        }
    }
}

/// The pattern in Kazoo's dialect, parsed.
fn parse(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(&crate::pcre::translate_with(pattern, Dollar::EndOnly).ok()?)
        .ok()
}

/// Anchored at both ends: every match is the whole number.
fn is_anchored(hir: &Hir) -> bool {
    let p = hir.properties();
    p.look_set_prefix().contains(Look::Start) && p.look_set_suffix().contains(Look::End)
}

/// Every string of the language when it is finite and at most `limit` strings, look-around
/// ignored (so a superset of the language; callers filter with the regex). `None` otherwise.
fn enumerate(hir: &Hir, limit: usize) -> Option<Vec<String>> {
    let bytes = enumerate_bytes(hir, limit)?;
    let mut seen = HashSet::new();
    Some(
        bytes
            .into_iter()
            .filter_map(|b| String::from_utf8(b).ok())
            .filter(|s| seen.insert(s.clone()))
            .collect(),
    )
}

fn enumerate_bytes(hir: &Hir, limit: usize) -> Option<Vec<Vec<u8>>> {
    Some(match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![Vec::new()],
        HirKind::Literal(lit) => vec![lit.0.to_vec()],
        HirKind::Class(Class::Unicode(c)) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                for ch in r.start()..=r.end() {
                    out.push(ch.to_string().into_bytes());
                    if out.len() > limit {
                        return None;
                    }
                }
            }
            out
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    out.push(vec![b]);
                    if out.len() > limit {
                        return None;
                    }
                }
            }
            out
        }
        HirKind::Capture(c) => enumerate_bytes(&c.sub, limit)?,
        HirKind::Repetition(rep) => {
            let max = rep.max?;
            let sub = enumerate_bytes(&rep.sub, limit)?;
            let mut out = Vec::new();
            let mut power = vec![Vec::new()];
            for k in 0..=max {
                if k >= rep.min {
                    out.extend(power.iter().cloned());
                    if out.len() > limit {
                        return None;
                    }
                }
                if k < max {
                    power = product(&power, &sub, limit)?;
                }
            }
            out
        }
        HirKind::Concat(items) => {
            let mut out = vec![Vec::new()];
            for item in items {
                out = product(&out, &enumerate_bytes(item, limit)?, limit)?;
            }
            out
        }
        HirKind::Alternation(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(enumerate_bytes(item, limit)?);
                if out.len() > limit {
                    return None;
                }
            }
            out
        }
    })
}

fn product(a: &[Vec<u8>], b: &[Vec<u8>], limit: usize) -> Option<Vec<Vec<u8>>> {
    if a.len().saturating_mul(b.len()) > limit {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| {
                b.iter().map(move |y| {
                    let mut s = x.clone();
                    s.extend_from_slice(y);
                    s
                })
            })
            .collect(),
    )
}

#[derive(Clone, Copy)]
enum Walk {
    Shortest,
    Longest,
    Random,
}

/// Numbers the pattern's syntax tree suggests, one at a time: the shortest, a long one, then
/// random walks (seeded, so a report is reproducible). Look-around is ignored; callers filter.
struct Sampler<'h> {
    hir: &'h Hir,
    rng: StdRng,
    done: usize,
    seen: HashSet<String>,
}

impl<'h> Sampler<'h> {
    fn new(hir: &'h Hir, seed: u64) -> Self {
        Self {
            hir,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_ca11_f10d),
            done: 0,
            seen: HashSet::new(),
        }
    }
}

impl Iterator for Sampler<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        while self.done < 2 + RANDOM_WALKS {
            let walk = match self.done {
                0 => Walk::Shortest,
                1 => Walk::Longest,
                _ => Walk::Random,
            };
            self.done += 1;
            let mut bytes = Vec::new();
            sample(self.hir, walk, &mut self.rng, &mut bytes);
            if let Ok(s) = String::from_utf8(bytes) {
                if self.seen.insert(s.clone()) {
                    return Some(s);
                }
            }
        }
        None
    }
}

fn sample(hir: &Hir, walk: Walk, rng: &mut StdRng, out: &mut Vec<u8>) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.extend_from_slice(&lit.0),
        HirKind::Class(Class::Unicode(c)) => {
            let digits: Vec<char> = ('0'..='9')
                .filter(|d| c.ranges().iter().any(|r| r.start() <= *d && *d <= r.end()))
                .collect();
            let ch = if !digits.is_empty() {
                match walk {
                    Walk::Shortest => digits[0],
                    Walk::Longest => digits[digits.len() - 1],
                    Walk::Random => digits[rng.gen_range(0..digits.len())],
                }
            } else {
                let ranges = c.ranges();
                match (walk, ranges.first()) {
                    (_, None) => return,
                    (Walk::Random, Some(_)) => {
                        let r = &ranges[rng.gen_range(0..ranges.len())];
                        let span = (r.end() as u32 - r.start() as u32).min(64);
                        char::from_u32(r.start() as u32 + rng.gen_range(0..=span))
                            .unwrap_or(r.start())
                    }
                    (_, Some(r)) => r.start(),
                }
            };
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        HirKind::Class(Class::Bytes(c)) => {
            if let Some(r) = c.ranges().first() {
                let digit = (b'0'..=b'9')
                    .find(|d| c.ranges().iter().any(|r| r.start() <= *d && *d <= r.end()));
                out.push(digit.unwrap_or(r.start()));
            }
        }
        HirKind::Capture(c) => sample(&c.sub, walk, rng, out),
        HirKind::Repetition(rep) => {
            let cap = rep.max.unwrap_or(rep.min.saturating_add(MAX_EXTRA_REPEAT));
            let span = cap.saturating_sub(rep.min).min(MAX_EXTRA_REPEAT);
            let n = match walk {
                Walk::Shortest => rep.min,
                Walk::Longest => rep.min + span,
                Walk::Random => rep.min + rng.gen_range(0..=span),
            };
            for _ in 0..n.min(64) {
                sample(&rep.sub, walk, rng, out);
            }
        }
        HirKind::Concat(items) => {
            for item in items {
                sample(item, walk, rng, out);
            }
        }
        HirKind::Alternation(items) => {
            let pick = match walk {
                Walk::Shortest => 0,
                Walk::Longest => items.len() - 1,
                Walk::Random => rng.gen_range(0..items.len()),
            };
            sample(&items[pick], walk, rng, out);
        }
    }
}

/// The length range of what a pattern captures when it matches: its longest group, or the
/// whole match when it has none. The lower bound counts only groups every match goes through.
fn capture_bounds(hir: &Hir) -> (usize, Option<usize>) {
    fn walk(hir: &Hir, mandatory: bool, groups: &mut Vec<(bool, usize, Option<usize>)>) {
        match hir.kind() {
            HirKind::Capture(c) => {
                let p = c.sub.properties();
                groups.push((mandatory, p.minimum_len().unwrap_or(0), p.maximum_len()));
                walk(&c.sub, mandatory, groups);
            }
            HirKind::Repetition(rep) => walk(&rep.sub, mandatory && rep.min > 0, groups),
            HirKind::Concat(items) => items.iter().for_each(|i| walk(i, mandatory, groups)),
            HirKind::Alternation(items) => items.iter().for_each(|i| walk(i, false, groups)),
            _ => {}
        }
    }
    let mut groups = Vec::new();
    walk(hir, true, &mut groups);
    if groups.is_empty() {
        let p = hir.properties();
        return (p.minimum_len().unwrap_or(0), p.maximum_len());
    }
    let low = groups
        .iter()
        .filter(|g| g.0)
        .map(|g| g.1)
        .max()
        .unwrap_or(0);
    let high = groups
        .iter()
        .try_fold(0usize, |acc, g| g.2.map(|m| acc.max(m)));
    (low, high)
}

/// A dense DFA matching whole numbers from position 0 (all matches, so acceptance is "a match
/// ends at the end of the input").
fn build_dfa(pattern: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(DfaMatchKind::All)
                .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
        )
        .build(&crate::pcre::translate_with(pattern, Dollar::EndOnly).ok()?)
        .ok()
}

fn start_of(dfa: &dense::DFA<Vec<u32>>) -> Option<StateID> {
    dfa.start_state(&start::Config::new().anchored(Anchored::Yes))
        .ok()
}

fn accepts(dfa: &dense::DFA<Vec<u32>>, s: StateID) -> bool {
    dfa.is_match_state(dfa.next_eoi_state(s))
}

/// A shortest printable string the DFA accepts from position 0: `Some("")`-free answer, or
/// `None` when there is none (within the search limit, a `Some` of the empty string when the
/// limit was hit, so callers never read "empty" from an unfinished search).
fn shortest(dfa: &dense::DFA<Vec<u32>>) -> Option<String> {
    let start = start_of(dfa)?;
    let mut parent: HashMap<StateID, (StateID, u8)> = HashMap::new();
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(s) = queue.pop_front() {
        if s != start && accepts(dfa, s) {
            let mut bytes = Vec::new();
            let mut cur = s;
            while let Some(&(prev, b)) = parent.get(&cur) {
                bytes.push(b);
                cur = prev;
            }
            bytes.reverse();
            return String::from_utf8(bytes).ok();
        }
        if seen.len() > DFA_SEARCH_LIMIT {
            return Some(String::new());
        }
        for &b in ALPHABET {
            let next = dfa.next_state(s, b);
            if dfa.is_dead_state(next) || dfa.is_quit_state(next) || !seen.insert(next) {
                continue;
            }
            parent.insert(next, (s, b));
            queue.push_back(next);
        }
    }
    None
}

/// Whether every printable string `a` accepts, `b` accepts too (`None`: search limit hit).
fn included(a: &dense::DFA<Vec<u32>>, b: &dense::DFA<Vec<u32>>) -> Option<bool> {
    let start = (start_of(a)?, start_of(b)?);
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some((sa, sb)) = queue.pop_front() {
        if accepts(a, sa) && !accepts(b, sb) {
            return Some(false);
        }
        if seen.len() > DFA_SEARCH_LIMIT {
            return None;
        }
        for &byte in ALPHABET {
            let na = a.next_state(sa, byte);
            if a.is_dead_state(na) {
                continue;
            }
            if a.is_quit_state(na) {
                return None;
            }
            let nb = b.next_state(sb, byte);
            if b.is_quit_state(nb) {
                return None;
            }
            if seen.insert((na, nb)) {
                queue.push_back((na, nb));
            }
        }
    }
    Some(true)
}

/// Every candidate for `number`: the exact number's callflow, each pattern that matched with
/// its capture and position in Kazoo's order, the `no_match` callflow; the winner and, for
/// every loser, why it lost.
pub fn explain(table: &RouteTable, number: &str, allow_no_match: bool) -> Value {
    let route = table.lookup(number, allow_no_match, true);
    let exact = table.number(number).map(|id| id.to_string());
    let order: HashMap<(&str, &str), usize> = table
        .pattern_rules()
        .iter()
        .enumerate()
        .map(|(i, r)| ((&*r.pattern, &*r.callflow_id), i))
        .collect();
    // Every pattern that matches, whatever the exact number did.
    let hits = table.pattern_hits(number);
    let mut candidates = Vec::new();
    if let Some(id) = &exact {
        let won = route.as_ref().is_some_and(|r| r.kind == MatchKind::Number);
        candidates.push(json!({
            "type": "number", "value": number, "callflow_id": id,
            "result": if won { "winner" } else { "refused" },
            "why": if won { "exact numbers are checked before any pattern" } else { "the caller may not reach this callflow (it holds no_match)" },
        }));
    }
    let winner = route
        .as_ref()
        .filter(|r| r.kind == MatchKind::Pattern)
        .map(|r| (r.value.to_string(), r.callflow_id.to_string()));
    let best_len = route
        .as_ref()
        .and_then(|r| r.capture_group.as_ref())
        .map(|c| c.len())
        .unwrap_or(0);
    let winner_pos = winner
        .as_ref()
        .and_then(|(p, c)| order.get(&(p.as_str(), c.as_str())).copied());
    for hit in &hits {
        let pos = order
            .get(&(hit.pattern.as_str(), hit.callflow_id.as_str()))
            .copied();
        let is_winner = winner
            .as_ref()
            .is_some_and(|(p, c)| *p == hit.pattern && *c == hit.callflow_id);
        let why = if is_winner {
            match hits.len() {
                1 => "the only pattern that matched".to_string(),
                _ => format!(
                    "the longest capture ({} characters); a later pattern replaces the best only with a strictly longer one",
                    hit.capture.len()
                ),
            }
        } else if exact.is_some() {
            "an exact number of a callflow matched: numbers are checked before any pattern"
                .to_string()
        } else if hit.capture.len() < best_len {
            format!(
                "captured {} characters, the winner {best_len}",
                hit.capture.len()
            )
        } else if pos > winner_pos {
            format!(
                "captured {} characters, as many as the winner, which is tried first (patterns are tried by text descending, then callflow id descending)",
                hit.capture.len()
            )
        } else {
            "the caller may not reach this callflow (it holds no_match)".to_string()
        };
        candidates.push(json!({
            "type": "pattern", "value": hit.pattern, "callflow_id": hit.callflow_id,
            "capture": hit.capture, "length": hit.capture.len(), "order": pos,
            "result": if is_winner { "winner" } else { "lost" }, "why": why,
        }));
    }
    if let Some(r) = route.as_ref().filter(|r| r.kind == MatchKind::NoMatch) {
        candidates.push(json!({
            "type": "no_match", "value": "no_match", "callflow_id": r.callflow_id,
            "result": "winner", "why": r.reason,
        }));
    }
    json!({
        "number": number,
        "winner": route.as_ref().map(|r| json!({"type": r.kind.as_str(), "value": r.value, "callflow_id": r.callflow_id, "capture_group": r.capture_group})),
        "reason": route.as_ref().map(|r| r.reason.to_string()),
        "candidates": candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(numbers: &[(&str, &str)], patterns: &[(&str, &str)]) -> RouteTable {
        RouteTable::build(
            numbers.iter().map(|(n, c)| (n.to_string(), c.to_string())),
            patterns.iter().map(|(p, c)| (p.to_string(), c.to_string())),
        )
    }

    fn report<'a>(reports: &'a [PatternReport], pattern: &str) -> &'a PatternReport {
        reports.iter().find(|r| r.pattern == pattern).unwrap()
    }

    #[test]
    fn a_feature_code_prefix_loses_the_longer_code_to_its_exact_number() {
        let t = table(&[("*56", "park")], &[(r"^\*5(\d)$", "fc")]);
        let r = analyse(&t);
        assert_eq!(r[0].witness.as_deref(), Some("*50"));
    }

    #[test]
    fn a_finite_pattern_covered_by_exact_numbers_never_wins_exactly() {
        let t = table(&[("200", "a"), ("201", "b")], &[(r"^(20[01])$", "p")]);
        let r = &analyse(&t)[0];
        let nw = r.never_wins.as_ref().unwrap();
        assert_eq!(nw.reason, "exact_numbers");
        assert_eq!((r.method, r.exact), ("enumeration", true));
    }

    #[test]
    fn a_did_block_under_a_ten_digit_catch_all_never_wins_by_inclusion() {
        let t = table(
            &[],
            &[(r"^\+1415555(\d{4})$", "did"), (r"^\+?1?(\d{10})$", "us")],
        );
        let reports = analyse(&t);
        let r = report(&reports, r"^\+1415555(\d{4})$");
        assert_eq!(r.never_wins.as_ref().unwrap().reason, "other_pattern");
        assert_eq!((r.method, r.exact), ("dfa_inclusion", true));
        assert!(report(&reports, r"^\+?1?(\d{10})$").witness.is_some());
    }

    #[test]
    fn a_pattern_matching_nothing_is_reported_by_the_dfa() {
        let t = table(&[], &[(r"^1$2", "p")]);
        let r = &analyse(&t)[0];
        assert_eq!(r.never_wins.as_ref().unwrap().reason, "no_number");
        assert!(r.exact);
    }

    #[test]
    fn unanchored_patterns_get_witnesses_too() {
        let t = table(&[], &[("555", "p"), (r"^\*(\d+)", "s")]);
        let reports = analyse(&t);
        assert!(reports.iter().all(|r| r.witness.is_some()), "{reports:?}");
    }

    #[test]
    fn explain_lists_every_candidate_and_why() {
        let t = table(
            &[],
            &[(r"^\+?1?(\d{10})$", "us"), (r"^\+1415555(\d{4})$", "did")],
        );
        let e = explain(&t, "+14155550100", false);
        assert_eq!(e["winner"]["callflow_id"], "us");
        let c = e["candidates"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        let lost = c.iter().find(|c| c["result"] == "lost").unwrap();
        assert!(lost["why"]
            .as_str()
            .unwrap()
            .contains("captured 4 characters, the winner 10"));
    }
}
