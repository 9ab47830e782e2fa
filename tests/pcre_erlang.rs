//! Differential test of `src/pcre.rs` against Erlang's `re` (PCRE 8.x, what Kazoo runs): for
//! each pattern, PCRE and we must agree on whether it compiles (except the features we refuse
//! by design, docs/compatibility.md) and, when both compile, on which subjects match.
//! Needs `escript` on the PATH; without it the test says SKIPPED and passes.

use std::io::Write;
use std::process::Command;

/// Patterns: Kazoo's schemas and examples, feature codes, and PCRE's corner cases.
const PATTERNS: &[&str] = &[
    r"^[0-9]+$",
    r"^https?://",
    r"^[.\w_-]+$",
    r"^([+@.\w_-]+)$",
    r"^[A-Za-z]{2}(-[A-Za-z]{2})?$",
    r"^[a-zA-z0-9_\-]+$",
    r"custom_sip_headers\..*",
    r".+",
    r"^\*7([0-9]{2,})$",
    r"^\+?1?(\d{10})$",
    r"^(?<ext>2\d{3})$",
    r"^(?P<x>\d+)$",
    r"^011(\d*)$",
    r"\*98(\d+)",
    r"*55(\d+)",
    r"^*9",
    r"(*9)",
    r"|*",
    r"+1",
    r"?1",
    r"^{2}",
    r"a{1}{2}",
    r"a**",
    r"a*?",
    r"{",
    r"a{",
    r"a{,3}",
    r"x{ 2}",
    r"x{1",
    r"x{2,}",
    r"}",
    r"\<a\>",
    r"[[]",
    r"[a&&b]",
    r"[]a]",
    r"[^]a]",
    r"^[[:digit:]]+$",
    r"^\d+$",
    r"^\D+$",
    r"^\w+$",
    r"^\W+$",
    r"^\s$",
    r"^\S$",
    r"^[\d*#]+$",
    r"^[^\d]+$",
    r"\bx\b",
    r"\Bx",
    r"^1\Z",
    r"^1\z",
    r"^\Q*9\E1$",
    r"^1(?#comment)*$",
    r"^(?'ext'2[0-9])$",
    r"(?i)^ABC$",
    r"(?m)^1$",
    r"^\h$",
    r"^\v$",
    r"^a|b$",
    r"(?:)*",
    r"()*",
    r"\d{2}*",
    r"a(?i)*",
    r"^\x41$",
];

/// Subjects, ASCII and not.
const SUBJECTS: &[&str] = &[
    "",
    "1",
    "1\n",
    "1\n\n",
    "123",
    "123\n",
    "*55123",
    "*9",
    "+14155550100",
    "2001",
    "x",
    " x ",
    "éx",
    "xé",
    "abc",
    "ABC",
    "a.b_c-d",
    "sïp",
    "α",
    "xα",
    "×",
    "ÿ",
    "١٢٣",
    "\u{A0}",
    "\t",
    "\u{B}",
    "{",
    "a{,3}",
    "x{ 2}",
    "x{1",
    "xx",
    "}",
    "<a>",
    "[",
    "&",
    "]",
    "https://x/",
    "custom_sip_headers.x",
    "1\n2",
    "21",
    "A",
];

/// Known disagreements (docs/compatibility.md): `\b`/`\B` next to a Latin-1 letter (PCRE's
/// word boundary uses its Latin-1 tables, ours is ASCII), and PCRE 8.44's own inconsistency in
/// UTF-8 mode: a repeated `\w`/`\W` outside a class reads a Latin-1 letter at the start of the
/// subject as a non-word character, where a single `\w` or a class (`[\w]`) reads it as a word
/// character (as we always do).
const KNOWN: &[(&str, &str)] = &[
    (r"\bx\b", "éx"),
    (r"\bx\b", "xé"),
    (r"\Bx", "éx"),
    (r"^\w+$", "éx"),
    (r"^\w+$", "ÿ"),
    (r"^\W+$", "ÿ"),
];

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

const ESCRIPT: &str = r#"#!/usr/bin/env escript
main([File]) ->
    {ok, Bin} = file:read_file(File),
    Lines = binary:split(Bin, <<"\n">>, [global, trim_all]),
    lists:foreach(fun(Line) ->
        [P | Ss] = binary:split(Line, <<",">>, [global]),
        case re:compile(binary:decode_hex(P), [unicode]) of
            {ok, MP} ->
                R = [case re:run(binary:decode_hex(S), MP, [{capture, none}]) of
                         match -> $1;
                         nomatch -> $0
                     end || S <- Ss],
                io:format("ok ~s~n", [R]);
            {error, _} -> io:format("error~n")
        end
    end, Lines).
"#;

#[test]
fn our_pcre_reading_agrees_with_erlang_re() {
    if Command::new("escript").arg("-h").output().is_err() {
        eprintln!("SKIPPED: escript (Erlang) not found; PCRE differential test not run");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("pcre.escript");
    std::fs::write(&script, ESCRIPT).expect("script");
    let input = dir.path().join("cases.txt");
    let mut f = std::fs::File::create(&input).expect("cases");
    for p in PATTERNS {
        let subjects: Vec<String> = SUBJECTS.iter().map(|s| hex(s)).collect();
        writeln!(f, "{},{}", hex(p), subjects.join(",")).expect("write");
    }
    drop(f);
    let out = Command::new("escript")
        .arg(&script)
        .arg(&input)
        .output()
        .expect("escript runs");
    assert!(
        out.status.success(),
        "escript failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let verdicts: Vec<&str> = text.lines().collect();
    assert_eq!(verdicts.len(), PATTERNS.len(), "{text}");

    let mut disagreements = Vec::new();
    let mut compared = 0;
    for (p, erl) in PATTERNS.iter().zip(&verdicts) {
        let ours = callflowd::pcre::translate(p)
            .map_err(|e| e.to_string())
            .and_then(|t| regex::Regex::new(&t).map_err(|e| e.to_string()));
        match (ours, erl.strip_prefix("ok ")) {
            (Err(_), None) => {}
            (Err(e), Some(_)) if e.contains("are not supported") => {}
            (Err(e), Some(_)) => disagreements.push(format!("{p}: PCRE compiles, we refuse: {e}")),
            (Ok(_), None) => disagreements.push(format!("{p}: PCRE refuses, we compile")),
            (Ok(re), Some(bits)) => {
                for (s, bit) in SUBJECTS.iter().zip(bits.bytes()) {
                    compared += 1;
                    let known = KNOWN.contains(&(*p, *s));
                    if (re.is_match(s) != (bit == b'1')) != known {
                        disagreements.push(format!(
                            "{p} on {s:?}: PCRE {}, we {}{}",
                            bit == b'1',
                            re.is_match(s),
                            if known { " (listed as known)" } else { "" }
                        ));
                    }
                }
            }
        }
    }
    println!(
        "pcre differential: {} patterns, {compared} pattern/subject pairs compared with Erlang re",
        PATTERNS.len()
    );
    assert!(
        disagreements.is_empty(),
        "disagreements with Erlang re:\n{}",
        disagreements.join("\n")
    );
}
