#!/usr/bin/env bash
# Builds a case file for the `kazoo_differential` test by running Kazoo's own temporal-rule
# functions under Erlang/OTP. Kazoo's code is read from a local mirror at run time and never
# stored here. Usage:
#   tests/kazoo_temporal_diff/make-cases.sh /path/to/kazoo.git /tmp/cases.txt [seed]
#   KAZOO_DIFF=/tmp/cases.txt cargo test --lib kazoo_differential -- --ignored --nocapture
set -euo pipefail
repo=$1 out=$2 seed=${3:-42}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
show() { git -C "$repo" show "HEAD:$1"; }
show applications/callflow/src/module/cf_temporal_route.hrl > "$work/cf_temporal_route.hrl"
show core/kazoo_stdlib/src/kz_date.erl | grep -v '^-include' > "$work/kz_date.erl"
{
  echo '-module(kt).'
  echo '-compile([export_all, nowarn_export_all, nowarn_unused_function, nowarn_unused_type]).'
  echo '-define(SECONDS_IN_DAY, 86400).'
  echo '-include("cf_temporal_route.hrl").'
  # next_rule_date/2 and its helpers, up to and including sort_wdays/1.
  show applications/callflow/src/module/cf_temporal_route.erl |
    awk '/^-spec next_rule_date/{on=1} /^-spec interdigit_timeout/{on=0} on'
  cat "$here/harness.erl"
} > "$work/kt.erl"
cat > "$work/lager.erl" <<'ERL'
-module(lager).
-export([debug/1, debug/2, info/1, info/2]).
debug(_) -> ok.
debug(_, _) -> ok.
info(_) -> ok.
info(_, _) -> ok.
ERL
(cd "$work" && erlc kt.erl kz_date.erl lager.erl >/dev/null)
erl -noshell -pa "$work" -eval "kt:main($seed, 5000, 400, \"$out\"), halt()."
wc -l "$out"
