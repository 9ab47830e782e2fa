#!/bin/sh
# Seed the fuzz corpora from Kazoo's examples and schemas (../../shared/reference/kazoo) and
# our schema files. Run from fuzz/. Corpora are not committed (see .gitignore).
set -eu
ref=${KAZOO_REFERENCE:-../../shared/reference/kazoo}
mkdir -p corpus/simulate corpus/schema_validate corpus/pattern_compile corpus/request_parse
i=0
for f in "$ref"/examples/valid/*.json "$ref"/examples/invalid/*.json; do
  i=$((i + 1))
  jq -c .doc "$f" > "corpus/simulate/$i.json"
  # schema_validate: a selector byte (0 = callflows), then the document.
  { printf '\000'; jq -c .doc "$f"; } > "corpus/schema_validate/ex$i"
  # request_parse: PUT (1), application/json (1), no query, then the envelope.
  { printf '\001\001\000'; jq -c '{data: .doc}' "$f"; } > "corpus/request_parse/put$i"
  # POST with verb tunnelling in the query string.
  { printf '\002\000verb=PATCH&auth_token=x\000'; jq -c '{data: .doc, verb: "delete"}' "$f"; } > "corpus/request_parse/post$i"
  jq -r '.doc.patterns // [] | if type == "array" then .[] else . end | tostring' "$f" |
    while IFS= read -r p; do
      printf '%s' "$p" > "corpus/pattern_compile/$(printf '%s' "$p" | sha1sum | cut -c1-16)"
    done
done
# Every schema document, under each selector the target knows (8).
j=0
for f in "$ref"/schemas/*.json ../schemas/*.json; do
  j=$((j + 1))
  s=$((j % 8))
  { printf "\\$(printf '%03o' "$s")"; jq -c . "$f"; } > "corpus/schema_validate/schema$j"
  jq -r '.. | objects | (.pattern? // empty), (.patternProperties? // {} | keys[])' "$f" 2>/dev/null |
    while IFS= read -r p; do
      printf '%s' "$p" > "corpus/pattern_compile/$(printf '%s' "$p" | sha1sum | cut -c1-16)"
    done
done
# PCRE corner cases.
for p in '*55(\d+)' '^*9' '(*9)' '|*' 'a{' 'a{,3}' '^{2}' 'x{ 2}' 'a*+' '\Q*9\E' '[[]' '[a&&b]' \
         '\Z' '(?#c)1*' "(?'n'1)" '(*UCP)\d' '^\+?1?(\d{10})$' '^(?<ext>2\d{3})$' '\b\d\b'; do
  printf '%s' "$p" > "corpus/pattern_compile/$(printf '%s' "$p" | sha1sum | cut -c1-16)"
done
for d in corpus/*; do echo "$d: $(ls "$d" | wc -l) inputs"; done
