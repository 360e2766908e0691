#!/usr/bin/env bash
# The whole test suite: installs what it needs, then format check, lint,
# type check, the import rule, the unit tier (tests/unit: pure code in
# virtual time, in parallel) and the integration tier (tests/integration:
# real chronyd, bird, ip netns, processes and sockets, one file at a time).
# Ends with one line "N passed, N failed, N skipped" over both tiers.
set -uo pipefail
cd "$(dirname "$0")"
deno=$(scripts/setup.sh test | tail -n 1) || exit 1
export PATH="$(dirname "$deno"):$PATH"
export NO_COLOR=1   # plain summary lines to parse
deno task check || { echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0 ignored=0 ok=1
# Runs one tier; adds its closing "ok | N passed | N failed | N ignored" line to the totals.
tier() {
  local log rc summary p f i
  log=$(mktemp)
  deno task "$1" "${@:2}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1)
  rm -f "$log"
  p=$(sed -nE 's/.*\| ([0-9]+) passed.*/\1/p' <<<"$summary")
  f=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
  i=$(sed -nE 's/.*\| ([0-9]+) ignored.*/\1/p' <<<"$summary")
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-1}))
  ignored=$((ignored + ${i:-0}))
  if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then ok=0; fi
}
tier test "$@"
tier test:integration "$@"
echo "${passed} passed, ${failed} failed, ${ignored} skipped"
[ "$ok" -eq 1 ]
