#!/usr/bin/env bash
# The whole test suite: installs what it needs, then format check, lint,
# type check and every test (unit, simulation, integration with real
# chronyd, bird and ip netns). Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
deno=$(scripts/setup.sh test | tail -n 1) || exit 1
export PATH="$(dirname "$deno"):$PATH"
export NO_COLOR=1   # plain summary lines to parse
deno task check || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
deno task test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1)
passed=$(sed -nE 's/.*\| ([0-9]+) passed.*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
ignored=$(sed -nE 's/.*\| ([0-9]+) ignored.*/\1/p' <<<"$summary")
rm -f "$log"
echo "${passed:-0} passed, ${failed:-1} failed, ${ignored:-0} skipped"
[ "$rc" -eq 0 ] && [ -n "$summary" ]
