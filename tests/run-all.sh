#!/usr/bin/env bash
# Runs every test in both builds: unit tests (CUnit) and integration tests
# (real binary, real clients), first the release build, then ASan+UBSan.
# Prints a closing "N passed, N failed" line; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0
results=()
step() { # name, command...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); results+=("ok   $name"); else failed=$((failed + 1)); results+=("FAIL $name"); fi
}
skipped=0
if [ -d ../shared/corpus ]; then
  echo "shared corpus found at ../shared/corpus"
else
  echo "shared corpus not found at ../shared/corpus: corpus-based tests will skip"
  skipped=2 # the corpus checks of the offline tools, release and asan+ubsan
fi
step "format check (.clang-format)" make --no-print-directory format-check
step "library boundaries and folder dependencies" ./tests/boundaries.sh
step "unit tests (release)" ./build/unit-tests
step "unit tests (asan+ubsan)" ./build/asan/unit-tests
step "unit tests (valgrind memcheck)" valgrind --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite,indirect -q ./build/unit-tests
step "fuzz smoke: every libFuzzer target from its seeds (${FUZZ_SECONDS:-10} s each)" \
  make --no-print-directory -f fuzz/fuzz.mk fuzz-run FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
# The suites on PostgreSQL (the delivery suite again, over the PostgreSQL store, and the cluster of three
# instances) and the console's browser tests run side by side with the rest, one after another in the
# background; their output is shown at the end.
PGLOG=$(mktemp /tmp/cergw-pgsuites.XXXXXX)
pg_suites() {
  local name rc
  for name in "delivery over PostgreSQL (release)|./tests/integration/delivery.sh build postgresql" \
    "cluster: three instances on one PostgreSQL (release)|./tests/integration/cluster.sh build" \
    "delivery over PostgreSQL (asan+ubsan)|./tests/integration/delivery.sh build/asan postgresql" \
    "cluster: three instances on one PostgreSQL (asan+ubsan)|./tests/integration/cluster.sh build/asan" \
    "console in Chromium (release)|./tests/integration/console.sh build" \
    "console in Chromium (asan+ubsan)|./tests/integration/console.sh build/asan"; do
    echo "=== ${name%%|*}"
    ${name#*|}
    rc=$?
    echo "=== result $rc ${name%%|*}"
  done
}
# (niced: the timing checks of the suites in the foreground keep their CPU)
nice -n 10 bash -c "$(declare -f pg_suites); pg_suites" >"$PGLOG" 2>&1 &
pg_pid=$!
step "integration tests (release)" ./tests/integration/run.sh build
step "offline tools, mappings, corpus (release)" ./tests/integration/cli.sh build
step "delivery: gateway + simulators end to end (release)" ./tests/integration/delivery.sh build
step "integration tests (asan+ubsan)" ./tests/integration/run.sh build/asan
step "offline tools, mappings, corpus (asan+ubsan)" ./tests/integration/cli.sh build/asan
step "delivery: gateway + simulators end to end (asan+ubsan)" ./tests/integration/delivery.sh build/asan
wait "$pg_pid"
cat "$PGLOG"
while read -r _ _ rc name; do
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); results+=("ok   $name"); else failed=$((failed + 1)); results+=("FAIL $name"); fi
done < <(grep '^=== result ' "$PGLOG")
rm -f "$PGLOG"
echo "=== summary"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$skipped" -eq 0 ] || echo "skipped: the checks on the shared corpus (../shared/corpus is absent on this machine)"
[ "$failed" -eq 0 ]
