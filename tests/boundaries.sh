#!/usr/bin/env bash
# Library boundaries (docs/architecture.md, "Library boundaries, and the
# exceptions"): each third-party library is included only where the
# architecture says. A new include elsewhere fails here, naming the file;
# widening a boundary means changing this list and the doc together.
# Prints "N passed, N failed"; exits 1 on any failure.
set -u
cd "$(dirname "$0")/.."
pass=0
fail=0
# header pattern | files or folders (prefixes) allowed to include it
rules=(
  "openssl/|gateway/tls/"
  "sqlite3.h|gateway/store/"
  "curl/|gateway/deliver/dispatch.c gateway/sim/"
  "nghttp2/|gateway/h2/"
  "event2/|gateway/net/"
  "libxslt/|gateway/xform/"
  "libexslt/|gateway/xform/"
  "libxml/|gateway/codec/ gateway/xform/ gateway/validate/ gateway/msg/ gateway/pipe/ gateway/deliver/config.c gateway/deliver/dispatch.c gateway/http/router.c gateway/main.c gateway/sim/ gateway/console/"
  "yajl/|gateway/codec/fhir.c gateway/conf/ gateway/deliver/config.c gateway/deliver/dispatch.c gateway/validate/rules.c gateway/sim/ gateway/console/"
  "libpq-fe.h|gateway/store/"
  "http_parser.h|gateway/h1/ gateway/net/server.c"
)
for r in "${rules[@]}"; do
  hdr=${r%%|*}
  allowed=${r#*|}
  bad=()
  while IFS= read -r f; do
    ok=0
    for a in $allowed; do [[ $f == "$a"* ]] && ok=1; done
    [ $ok = 1 ] || bad+=("$f")
  done < <(grep -rl --include='*.[ch]' "#include <$hdr" gateway)
  if [ ${#bad[@]} -eq 0 ]; then
    pass=$((pass + 1)); echo "ok   - <$hdr> only in: $allowed"
  else
    fail=$((fail + 1)); echo "FAIL - <$hdr> included outside its boundary: ${bad[*]}"
  fi
done
# no include cycle between folders
cycle=$(for f in $(find gateway -mindepth 2 -name '*.[ch]'); do
  d=$(basename "$(dirname "$f")")
  grep -o '#include "[a-z0-9]*/' "$f" | sed 's/#include "//; s|/||' | sort -u | while read -r t; do
    [ "$t" != "$d" ] && echo "$d $t"
  done
done | sort -u | tsort 2>&1 >/dev/null | grep -i "loop\|cycle")
if [ -z "$cycle" ]; then pass=$((pass + 1)); echo "ok   - no include cycle between folders"
else fail=$((fail + 1)); echo "FAIL - include cycle between folders: $cycle"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
