//! Kazoo's regex dialect (Erlang `re`, i.e. PCRE 8.x) rewritten into `regex`-crate syntax.
//!
//! Owns: deciding what a PCRE pattern means and producing a pattern the `regex` family of
//! crates reads the same way, or the reason PCRE (or we) refuse it. Used by the schema
//! validator (`pattern`, `patternProperties`) and by callflow patterns (routing). Must not
//! compile anything itself, nor know about documents or HTTP.
//!
//! Two passes. A lexer handles what the `regex` parser would read differently from PCRE:
//! a quantifier with nothing to repeat is an error (PCRE's "nothing to repeat", with its
//! offset); a `{` that does not start a well-formed `{n}`, `{n,}` or `{n,m}` is a literal (as
//! in PCRE, where `a{,3}` or a lone `{` match themselves); `\Q…\E`, `\Z`, `\<`, `\>`, `\h`, `\v`,
//! `(?#…)` and `(?'name'…)` get their PCRE meaning; inside a class a `[` (other than a POSIX
//! `[:name:]`), `&&` and `~~` are literals. The result is then parsed by `regex-syntax`, and
//! the parsed tree (its spans) says where to rewrite the Perl classes, which PCRE reads through
//! Erlang's ISO-Latin-1 tables (`\d` and `\s` ASCII, `\w` ASCII plus the Latin-1 letters; never
//! Unicode), `\b \B` (ASCII word boundaries: the closest the `regex` crate can express), and
//! `$`, which in PCRE also matches before a newline that ends the subject. Features PCRE has and `regex` lacks (look-around, back-references,
//! possessive quantifiers, atomic groups, verbs, recursion) are refused with their name.

use regex_syntax::ast::{self, AssertionKind, Ast, ClassPerl, ClassPerlKind, ClassSetItem};

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcreError {
    /// PCRE's own compile error: a quantifier follows nothing repeatable. `offset` is PCRE's
    /// (bytes), `fix` the pattern with that quantifier escaped.
    #[error("nothing to repeat at offset {offset}: escape it: {fix}")]
    NothingToRepeat { offset: usize, fix: String },
    /// PCRE accepts it, the `regex` engines have no equivalent.
    #[error("{0} are not supported")]
    Unsupported(&'static str),
    /// Any other syntax error, as the parser words it.
    #[error("{0}")]
    Syntax(String),
}

/// How `$` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dollar {
    /// PCRE's default: at the end, or before a newline that ends the subject.
    PcreDefault,
    /// Only at the end. For reasoning about languages of dialled numbers, which never hold a
    /// newline (the routing analysis), where the extra branch would only add noise.
    EndOnly,
}

/// Deepest nesting accepted (the `regex` default is 250; PCRE's is about as deep).
const NEST_LIMIT: u32 = 200;

/// PCRE pattern → equivalent `regex` pattern, `$` read as PCRE does.
pub fn translate(pattern: &str) -> Result<String, PcreError> {
    translate_with(pattern, Dollar::PcreDefault)
}

/// PCRE pattern → equivalent `regex` pattern.
pub fn translate_with(pattern: &str, dollar: Dollar) -> Result<String, PcreError> {
    let lexed = lex(pattern)?;
    let parsed = ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(&lexed)
        .map_err(|e| parse_error(&e))?;
    let edits = Edits {
        dollar,
        list: Vec::new(),
    };
    let mut edits = ast::visit(&parsed, edits)?;
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(lexed.len() + 16 * edits.len());
    let mut at = 0;
    for (start, end, text) in edits {
        // Spans never overlap (each edit replaces one leaf); skip defensively if they did.
        if start < at {
            continue;
        }
        out.push_str(&lexed[at..start]);
        out.push_str(text);
        at = end;
    }
    out.push_str(&lexed[at..]);
    Ok(out)
}

fn parse_error(e: &ast::Error) -> PcreError {
    use ast::ErrorKind as K;
    match e.kind() {
        K::UnsupportedLookAround => PcreError::Unsupported("look-around assertions"),
        K::UnsupportedBackreference => PcreError::Unsupported("back-references"),
        kind => PcreError::Syntax(kind.to_string()),
    }
}

/// Collects (start, end, replacement) for every leaf PCRE reads differently.
struct Edits {
    dollar: Dollar,
    list: Vec<(usize, usize, &'static str)>,
}

impl Edits {
    fn push(&mut self, span: &ast::Span, text: &'static str) {
        self.list.push((span.start.offset, span.end.offset, text));
    }
}

/// PCRE's `\w` with Erlang's Latin-1 tables, as a class body.
macro_rules! latin1_word {
    () => {
        r"0-9A-Za-z_\x{AA}\x{B5}\x{BA}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{FF}"
    };
}

fn perl_class(class: &ClassPerl, in_class: bool) -> &'static str {
    match (class.kind.clone(), class.negated, in_class) {
        (ClassPerlKind::Digit, false, false) => "[0-9]",
        (ClassPerlKind::Digit, false, true) => "0-9",
        (ClassPerlKind::Digit, true, _) => "[^0-9]",
        // Erlang builds PCRE with ISO-Latin-1 character tables: `\w` also takes the Latin-1
        // letters (ª µ º À-Ö Ø-ö ø-ÿ), and nothing above U+00FF.
        (ClassPerlKind::Word, false, false) => concat!("[", latin1_word!(), "]"),
        (ClassPerlKind::Word, false, true) => latin1_word!(),
        (ClassPerlKind::Word, true, _) => concat!("[^", latin1_word!(), "]"),
        (ClassPerlKind::Space, false, false) => r"[\t\n\x0B\x0C\r ]",
        (ClassPerlKind::Space, false, true) => r"\t\n\x0B\x0C\r ",
        (ClassPerlKind::Space, true, _) => r"[^\t\n\x0B\x0C\r ]",
    }
}

impl ast::Visitor for Edits {
    type Output = Vec<(usize, usize, &'static str)>;
    type Err = PcreError;

    fn finish(self) -> Result<Self::Output, PcreError> {
        Ok(self.list)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), PcreError> {
        match ast {
            Ast::ClassPerl(class) => self.push(&class.span, perl_class(class, false)),
            Ast::Assertion(a) => match a.kind {
                AssertionKind::EndLine if self.dollar == Dollar::PcreDefault => {
                    self.push(&a.span, r"(?:$|\n\z)")
                }
                AssertionKind::WordBoundary => self.push(&a.span, r"(?-u:\b)"),
                AssertionKind::NotWordBoundary => self.push(&a.span, r"(?-u:\B)"),
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), PcreError> {
        if let ClassSetItem::Perl(class) = item {
            self.push(&class.span, perl_class(class, true));
        }
        Ok(())
    }
}

/// What precedes the current position, for quantifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start of pattern, group or branch, an assertion, or an option setting.
    Nothing,
    /// Something a quantifier may repeat.
    Item,
    /// A quantifier, which a `?` (lazy) or `+` (possessive) may still follow.
    Quantifier,
    /// A quantifier with its suffix.
    Done,
}

/// PCRE's `\h` (horizontal white space), as a class body.
const H_SPACE: &str = r"\t \x{A0}\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}";
/// PCRE's `\v` (vertical white space), as a class body.
const V_SPACE: &str = r"\n\x0B\x0C\r\x{85}\x{2028}\x{2029}";

/// First pass: everything the `regex` parser would read differently, rewritten or refused.
fn lex(pattern: &str) -> Result<String, PcreError> {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut prev = Prev::Nothing;
    let mut i = 0;
    let nothing = |offset: usize, at: usize| PcreError::NothingToRepeat {
        offset,
        fix: format!("{}\\{}", &pattern[..at], &pattern[at..]),
    };
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => {
                let Some(next) = pattern[i + 1..].chars().next() else {
                    return Err(PcreError::Syntax("\\ at end of pattern".into()));
                };
                let end = i + 1 + next.len_utf8();
                let before = prev;
                prev = Prev::Item;
                match next {
                    'Q' => {
                        let body_end = pattern[end..].find("\\E").map_or(bytes.len(), |p| end + p);
                        let body = &pattern[end..body_end];
                        if body.is_empty() {
                            prev = before;
                        }
                        out.push_str(&regex_syntax::escape(body));
                        i = (body_end + 2).min(bytes.len());
                        continue;
                    }
                    'E' => prev = before,
                    'b' | 'B' | 'A' | 'z' => {
                        out.push('\\');
                        out.push(next);
                        prev = Prev::Nothing;
                    }
                    'Z' => {
                        out.push_str(r"(?:\n?\z)");
                        prev = Prev::Nothing;
                    }
                    'G' => return Err(PcreError::Unsupported("\\G assertions")),
                    'K' => return Err(PcreError::Unsupported("\\K match resets")),
                    'R' | 'X' | 'C' => {
                        return Err(PcreError::Unsupported("\\R, \\X and \\C escapes"))
                    }
                    'g' | 'k' => return Err(PcreError::Unsupported("back-references")),
                    '<' | '>' => out.push(next),
                    'h' => {
                        out.push('[');
                        out.push_str(H_SPACE);
                        out.push(']');
                    }
                    'H' => {
                        out.push_str("[^");
                        out.push_str(H_SPACE);
                        out.push(']');
                    }
                    'v' => {
                        out.push('[');
                        out.push_str(V_SPACE);
                        out.push(']');
                    }
                    'V' => {
                        out.push_str("[^");
                        out.push_str(V_SPACE);
                        out.push(']');
                    }
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                i = end;
            }
            b'[' => {
                i = lex_class(pattern, i, &mut out)?;
                prev = Prev::Item;
            }
            b'(' => {
                let rest = &pattern[i..];
                if rest.starts_with("(?#") {
                    // A comment: dropped, and invisible to quantifiers (as in PCRE).
                    i = rest.find(')').map_or(bytes.len(), |p| i + p + 1);
                    continue;
                }
                if rest.len() > 2 && rest.starts_with("(*") && bytes[i + 2].is_ascii_uppercase() {
                    return Err(PcreError::Unsupported("(*VERB) settings and control verbs"));
                }
                prev = Prev::Nothing;
                let head = group_head(rest)?;
                match head {
                    Head::Plain => out.push('('),
                    Head::Copy(n) => out.push_str(&rest[..n]),
                    Head::Quoted(name, n) => {
                        out.push_str("(?P<");
                        out.push_str(name);
                        out.push('>');
                        i += n;
                        continue;
                    }
                }
                i += match head {
                    Head::Copy(n) => n,
                    _ => 1,
                };
            }
            b')' => {
                out.push(')');
                prev = Prev::Item;
                i += 1;
            }
            b'|' | b'^' | b'$' => {
                out.push(b as char);
                prev = Prev::Nothing;
                i += 1;
            }
            b'*' | b'+' | b'?' => {
                prev = match (prev, b) {
                    (Prev::Item, _) => Prev::Quantifier,
                    (Prev::Quantifier, b'?') => Prev::Done,
                    (Prev::Quantifier, b'+') => {
                        return Err(PcreError::Unsupported("possessive quantifiers"))
                    }
                    _ => return Err(nothing(i, i)),
                };
                out.push(b as char);
                i += 1;
            }
            b'{' => match counted(&pattern[i..]) {
                Some(len) => {
                    prev = match prev {
                        Prev::Item => Prev::Quantifier,
                        _ => return Err(nothing(i + len - 1, i)),
                    };
                    out.push_str(&pattern[i..i + len]);
                    i += len;
                }
                None => {
                    out.push_str("\\{");
                    prev = Prev::Item;
                    i += 1;
                }
            },
            b'}' => {
                out.push_str("\\}");
                prev = Prev::Item;
                i += 1;
            }
            _ => {
                let c = pattern[i..].chars().next().unwrap_or('\u{FFFD}');
                out.push(c);
                // In extended mode white space and comments are not items, but a quantifier
                // after them is then PCRE's business too; treat them as items (lenient).
                prev = Prev::Item;
                i += c.len_utf8().max(1);
            }
        }
    }
    Ok(out)
}

/// How a group opens.
enum Head<'p> {
    /// `(`: copy one byte.
    Plain,
    /// A head copied as is, of this many bytes (`(?:`, `(?i)`, `(?P<n>`, `(?<n>`).
    Copy(usize),
    /// `(?'name'`: rewritten as `(?P<name>`; the head is this many bytes.
    Quoted(&'p str, usize),
}

fn group_head(rest: &str) -> Result<Head<'_>, PcreError> {
    let Some(after) = rest.strip_prefix("(?") else {
        return Ok(Head::Plain);
    };
    let b = after.as_bytes();
    match b.first() {
        Some(b'=' | b'!') => Err(PcreError::Unsupported("look-around assertions")),
        Some(b'<') if matches!(b.get(1), Some(b'=' | b'!')) => {
            Err(PcreError::Unsupported("look-around assertions"))
        }
        Some(b'>') => Err(PcreError::Unsupported("atomic groups")),
        Some(b'|') => Err(PcreError::Unsupported("branch-reset groups")),
        Some(b'(') => Err(PcreError::Unsupported("conditional groups")),
        Some(b'R' | b'&' | b'+' | b'0'..=b'9') => Err(PcreError::Unsupported("recursion")),
        Some(b'P') if matches!(b.get(1), Some(b'=' | b'>')) => {
            Err(PcreError::Unsupported("back-references and recursion"))
        }
        Some(b'<') | Some(b'P') => {
            let close = after.find('>').ok_or_else(|| {
                PcreError::Syntax("syntax error in subpattern name (missing terminator)".into())
            })?;
            Ok(Head::Copy(2 + close + 1))
        }
        Some(b'\'') => {
            let name_len = after[1..].find('\'').ok_or_else(|| {
                PcreError::Syntax("syntax error in subpattern name (missing terminator)".into())
            })?;
            Ok(Head::Quoted(&after[1..1 + name_len], 2 + 1 + name_len + 1))
        }
        _ => {
            // Option letters, then `)` (a setting) or `:` (a group).
            let flags = after
                .bytes()
                .take_while(|c| c.is_ascii_alphabetic() || *c == b'-')
                .count();
            match b.get(flags) {
                Some(b')' | b':') => Ok(Head::Copy(2 + flags + 1)),
                _ => Ok(Head::Copy(2)),
            }
        }
    }
}

/// Length of a PCRE counted quantifier at the start of `s` (`{n}`, `{n,}`, `{n,m}`), if it is
/// one. PCRE 8 reads anything else (`{,n}`, `{ 1}`, a lone `{`) as literal text.
fn counted(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let min = digits(1);
    if min == 0 {
        return None;
    }
    let mut at = 1 + min;
    if b.get(at) == Some(&b',') {
        at += 1;
        at += digits(at);
    }
    (b.get(at) == Some(&b'}')).then_some(at + 1)
}

/// A class from its `[` to its `]`, with PCRE's literal reading of `[`, `&&` and `~~`.
/// Returns the position after the class.
fn lex_class(pattern: &str, start: usize, out: &mut String) -> Result<usize, PcreError> {
    let b = pattern.as_bytes();
    let mut i = start + 1;
    out.push('[');
    if b.get(i) == Some(&b'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first is a literal.
    if b.get(i) == Some(&b']') {
        out.push_str("\\]");
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            b']' => {
                out.push(']');
                return Ok(i + 1);
            }
            b'\\' => {
                let Some(next) = pattern[i + 1..].chars().next() else {
                    break;
                };
                match next {
                    // Backspace, in a class.
                    'b' => out.push_str(r"\x08"),
                    'h' => out.push_str(H_SPACE),
                    'v' => out.push_str(V_SPACE),
                    'H' | 'V' => {
                        out.push_str("[^");
                        out.push_str(if next == 'H' { H_SPACE } else { V_SPACE });
                        out.push(']');
                    }
                    'Q' | 'E' | 'R' | 'X' => {
                        return Err(PcreError::Unsupported("\\Q, \\E, \\R and \\X in classes"))
                    }
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                i += 1 + next.len_utf8();
            }
            b'[' => {
                // A POSIX class `[:name:]` (or `[:^name:]`) is kept; any other `[` is literal.
                let rest = &pattern[i..];
                let posix = rest
                    .strip_prefix("[:")
                    .and_then(|r| r.find(":]"))
                    .filter(|&end| {
                        rest[2..2 + end]
                            .trim_start_matches('^')
                            .bytes()
                            .all(|c| c.is_ascii_alphabetic())
                    });
                match posix {
                    Some(end) => {
                        out.push_str(&rest[..2 + end + 2]);
                        i += 2 + end + 2;
                    }
                    None => {
                        out.push_str("\\[");
                        i += 1;
                    }
                }
            }
            c @ (b'&' | b'~') => {
                out.push('\\');
                out.push(c as char);
                i += 1;
            }
            _ => {
                let c = pattern[i..].chars().next().unwrap_or('\u{FFFD}');
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    Err(PcreError::Syntax(
        "missing terminating ] for character class".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(&translate(p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn dollar_also_matches_before_a_final_newline() {
        let r = re("^[0-9]+$");
        assert!(r.is_match("123") && r.is_match("123\n"));
        assert!(!r.is_match("123\n\n") && !r.is_match("12\n3"));
        let r = regex::Regex::new(&translate_with("^1$", Dollar::EndOnly).unwrap()).unwrap();
        assert!(!r.is_match("1\n"));
        assert!(re(r"^1\Z").is_match("1\n"));
        assert!(!re(r"^1\z").is_match("1\n"));
    }

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii() {
        assert!(!re(r"^\d+$").is_match("١٢٣"));
        assert!(re(r"^\d+$").is_match("123"));
        // Erlang's Latin-1 tables: `é` is a word character, `α` is not.
        assert!(re(r"^[.\w_-]+$").is_match("é"));
        assert!(!re(r"^[.\w_-]+$").is_match("α"));
        assert!(!re(r"^\w$").is_match("×"));
        assert!(re(r"^[.\w_-]+$").is_match("a.b_c-d"));
        assert!(!re(r"^\s$").is_match("\u{A0}"));
        assert!(re(r"^\S$").is_match("\u{A0}"));
        assert!(re(r"^[\D]$").is_match("١"));
        assert!(re(r"^\W$").is_match("α") && !re(r"^\W$").is_match("é"));
        // PCRE: `α` is not a word character, so there is a boundary between `α` and `a`.
        assert!(re(r"\ba").is_match("αa"));
        assert!(re(r"a\b").is_match("aα"));
        assert!(!re(r"a\B").is_match("aα"));
    }

    #[test]
    fn quantifiers_with_nothing_to_repeat_are_refused_where_pcre_refuses_them() {
        // Offsets as Erlang's re:compile reports them (checked with OTP 25, PCRE 8.44).
        for (p, offset, fix) in [
            (r"*55(\d+)", 0, r"\*55(\d+)"),
            ("^*9", 1, r"^\*9"),
            ("(*9)", 1, r"(\*9)"),
            ("|*", 1, r"|\*"),
            ("a|*", 2, r"a|\*"),
            ("+1", 0, r"\+1"),
            ("^+1", 1, r"^\+1"),
            ("?1", 0, r"\?1"),
            ("^{2}", 3, r"^\{2}"),
            ("{2,3}", 4, r"\{2,3}"),
            ("a{1}{2}", 6, r"a{1}\{2}"),
            ("a*{2}", 4, r"a*\{2}"),
            ("a**", 2, r"a*\*"),
            ("(?:*1)", 3, r"(?:\*1)"),
            ("^(?i)*1", 5, r"^(?i)\*1"),
            (r"\b*", 2, r"\b\*"),
            ("^$*", 2, r"^$\*"),
            ("a(?i)*", 5, r"a(?i)\*"),
            ("(?#x)*", 5, r"(?#x)\*"),
            (r"\Q\E*", 4, r"\Q\E\*"),
            (r"\E*", 2, r"\E\*"),
            ("a|?", 2, r"a|\?"),
            ("a{1,2}{3}", 8, r"a{1,2}\{3}"),
            (r"\d{2}*", 5, r"\d{2}\*"),
            (r"\A*", 2, r"\A\*"),
        ] {
            assert_eq!(
                translate(p),
                Err(PcreError::NothingToRepeat {
                    offset,
                    fix: fix.to_string()
                }),
                "{p}"
            );
        }
        for p in [
            "a(?#x)*", r"a\Q\E*", r"a\E*", "(?:)*", "()*", "a{2}?", "[]a]*",
        ] {
            assert!(translate(p).is_ok(), "PCRE compiles {p}");
        }
        assert_eq!(
            translate("*55").unwrap_err().to_string(),
            r"nothing to repeat at offset 0: escape it: \*55"
        );
    }

    #[test]
    fn braces_that_are_not_quantifiers_are_literal() {
        for (p, s) in [
            ("{", "{"),
            ("^{", "{"),
            ("a{", "a{"),
            ("a{,3}", "a{,3}"),
            ("x{ 2}", "x{ 2}"),
            ("x{1", "x{1"),
            ("}", "}"),
        ] {
            assert!(re(p).is_match(s), "{p}");
        }
        assert!(re("^x{2,}$").is_match("xxx"));
        assert!(re("^x{2}$").is_match("xx"));
    }

    #[test]
    fn other_pcre_literals() {
        assert!(re(r"\<").is_match("<"));
        assert!(re("[a&&b]").is_match("&"));
        assert!(re("[[]").is_match("["));
        assert!(re("^[[:digit:]]+$").is_match("42"));
        assert!(re(r"^\Q*9\E1$").is_match("*91"));
        assert!(re(r"^1(?#a comment)*$").is_match("111"));
        assert!(re("^(?'ext'2[0-9])$").is_match("21"));
        assert!(re("a*?b+?").is_match("b"));
    }

    #[test]
    fn unsupported_features_are_named() {
        assert_eq!(
            translate(r"^(?=1)\d+$").unwrap_err().to_string(),
            "look-around assertions are not supported"
        );
        assert_eq!(
            translate(r"^(\d)\1$").unwrap_err().to_string(),
            "back-references are not supported"
        );
        assert_eq!(
            translate("a*+").unwrap_err().to_string(),
            "possessive quantifiers are not supported"
        );
        assert!(translate("(*UCP)\\d").is_err());
        assert!(translate("(?>a)").is_err());
        assert!(translate("[a").is_err());
        assert!(translate("(a").is_err());
        assert!(translate("a\\").is_err());
    }
}
