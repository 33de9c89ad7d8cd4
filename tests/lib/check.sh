# The checks of the integration suites (sourced): ok/ko count and print "ok   - ..." / "FAIL - ...";
# check NAME COMMAND... runs the command; eq, has and wait_for are the usual conditions. The suite prints
# "$pass passed, $fail failed" at its end.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1${2:+: $2}"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }
eq() { [ "$1" = "$2" ] || { echo "    expected '$2', got '$1'" >&2; return 1; }; }
has() { # text pattern...: every (grep) pattern is in the text; says which is not, and shows the text
  local s=$1; shift
  for pat in "$@"; do grep -q -- "$pat" <<<"$s" || { echo "    no '$pat' in: ${s:0:800}" >&2; return 1; }; done
}
export -f has
wait_for() { # seconds, command...: polls until the command succeeds
  local s=$1; shift
  for _ in $(seq 1 $((s * 20))); do "$@" && return 0; sleep 0.05; done
  return 1
}
