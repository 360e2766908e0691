#!/usr/bin/env bash
# Installs what edge-time needs on a fresh Debian machine, only when missing:
#   setup.sh deno        Deno (npm package "deno", pinned in tools/package-lock.json)
#   setup.sh test        Deno plus the real peers the tests use: chrony,
#                        bird2, iproute2, ntpsec-ntpdate, a C compiler,
#                        chromium (headless, for the status page test)
# Prints the path of the deno binary on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-deno}

# The npm package lives in tools/, not at the root: a root package.json would
# make `deno task` resolve the `deno` command through the npm package.
if [ ! -x tools/node_modules/deno/deno ]; then
  command -v npm >/dev/null || { echo "setup: npm is needed to install Deno (apt-get install npm)" >&2; exit 1; }
  npm ci --prefix tools --no-audit --no-fund --loglevel=error >&2
fi
# .deno/bin/deno is where editors, hooks and `export PATH=$PWD/.deno/bin:$PATH` find it.
mkdir -p .deno/bin
ln -sf ../../tools/node_modules/deno/deno .deno/bin/deno

if [ "$want" = test ]; then
  missing=()
  command -v chronyd >/dev/null || missing+=(chrony)
  command -v bird >/dev/null || missing+=(bird2)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v ntpdate >/dev/null || missing+=(ntpsec-ntpdate)
  command -v cc >/dev/null || missing+=(gcc libc6-dev)
  command -v curl >/dev/null || missing+=(curl)
  command -v capsh >/dev/null || missing+=(libcap2-bin)  # tests/integration/clock_capability_test.ts
  command -v chromium >/dev/null || missing+=(chromium)  # tests/integration/browser_test.ts
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  # The chrony package starts a system chronyd; tests run their own on loopback.
  if command -v systemctl >/dev/null && systemctl is-active --quiet chrony 2>/dev/null; then
    systemctl stop chrony >&2 || true
  fi
fi
echo "$PWD/.deno/bin/deno"
