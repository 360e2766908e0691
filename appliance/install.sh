#!/usr/bin/env bash
# Installs edge-time as a systemd service, or removes it.
#
#   appliance/install.sh [--root DIR] [--binary FILE | --from-source]
#   appliance/install.sh [--root DIR] --uninstall [--purge]
#
# Puts in place (under DIR, default /):
#   /usr/local/bin/edge-time                 the binary (dist/edge-time-<target> by default)
#   /etc/systemd/system/edge-time.service    the unit (capabilities, hardening, reload, stop)
#   /etc/edge-time/edge-time.toml            the config: the embedded default, only if absent
#   /etc/edge-time/examples/*.toml           commented example configs, one per topology
#   /etc/sysctl.d/90-edge-time.conf          multipath hash sysctls (if appliance/ has them)
#   /etc/bird/edge-time-bird.conf            the BIRD snippet to include (if appliance/ has it)
#   /usr/local/share/doc/edge-time/          README.md, CHANGELOG.md and docs/
# With DIR = / it also creates the system user edge-time (in group bird when
# that exists, for birdc), applies the sysctls and enables the unit.
# --from-source installs a wrapper that runs this checkout with deno instead of
# a compiled binary (for machines where `deno task compile` cannot get denort).
# --uninstall removes all of the above except the config and the drift file
# (--purge removes those too).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
root=/
binary=""
from_source=0
uninstall=0
purge=0

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a DIR"; root="$2"; shift 2 ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a FILE"; binary="$2"; shift 2 ;;
    --from-source) from_source=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -d "$root" ] || die "--root $root: no such directory"
root="$(cd "$root" && pwd)"
R="${root%/}"   # prefix for every path; "" when installing into /
live=0; [ -z "$R" ] && live=1

BIN="$R/usr/local/bin/edge-time"
UNIT="$R/etc/systemd/system/edge-time.service"
CONF_DIR="$R/etc/edge-time"
SYSCTL="$R/etc/sysctl.d/90-edge-time.conf"
BIRD="$R/etc/bird/edge-time-bird.conf"
DOC="$R/usr/local/share/doc/edge-time"
STATE="$R/var/lib/edge-time"

has_systemd() { [ "$live" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

if [ "$uninstall" = 1 ]; then
  if has_systemd; then
    systemctl disable --now edge-time.service 2>/dev/null || true
  fi
  rm -f "$BIN" "$UNIT" "$SYSCTL" "$BIRD"
  rm -rf "$DOC" "$CONF_DIR/examples"
  if [ "$purge" = 1 ]; then
    rm -rf "$CONF_DIR" "$STATE" "$R/var/log/edge-time"
  fi
  has_systemd && systemctl daemon-reload || true
  echo "edge-time removed from ${root}$([ "$purge" = 1 ] || echo " (config and drift file kept; --purge removes them)")"
  exit 0
fi

# The binary: --binary, else the compiled one for this machine, else --from-source.
if [ "$from_source" = 0 ]; then
  if [ -z "$binary" ]; then
    case "$(uname -m)" in
      x86_64) target=x86_64-unknown-linux-gnu ;;
      aarch64|arm64) target=aarch64-unknown-linux-gnu ;;
      *) die "no compiled target for $(uname -m); use --from-source" ;;
    esac
    binary="$repo/dist/edge-time-$target"
  fi
  [ -x "$binary" ] || die "no binary at $binary: run 'deno task compile' (needs denort), pass --binary FILE, or use --from-source"
fi

install -d -m 0755 "$R/usr/local/bin" "$R/etc/systemd/system" "$CONF_DIR" "$CONF_DIR/examples" "$DOC"
if [ "$from_source" = 1 ]; then
  deno="$("$repo/scripts/setup.sh" deno | tail -n 1)"
  flags="$(cd "$repo" && "$deno" eval --no-config --quiet \
    'const m = await import("./appliance/compile.ts"); console.log(m.PERMISSION_FLAGS.join(" "))')"
  cat > "$BIN.tmp" <<WRAP
#!/bin/sh
# edge-time from source ($repo); installed by appliance/install.sh --from-source.
exec "$deno" run --quiet $flags --config "$repo/deno.json" "$repo/main.ts" "\$@"
WRAP
  chmod 0755 "$BIN.tmp"
  mv "$BIN.tmp" "$BIN"
else
  install -m 0755 "$binary" "$BIN.tmp"
  mv "$BIN.tmp" "$BIN"
fi
install -m 0644 "$here/edge-time.service" "$UNIT"
# Never overwrite an operator's config.
if [ ! -e "$CONF_DIR/edge-time.toml" ]; then
  install -m 0644 "$here/edge-time.toml" "$CONF_DIR/edge-time.toml"
else
  echo "install.sh: keeping existing $CONF_DIR/edge-time.toml"
fi
install -m 0644 "$here"/examples/*.toml "$CONF_DIR/examples/"
install -m 0644 "$repo/README.md" "$DOC/README.md"
[ -f "$repo/CHANGELOG.md" ] && install -m 0644 "$repo/CHANGELOG.md" "$DOC/CHANGELOG.md"
if [ -d "$repo/docs" ]; then
  (cd "$repo" && find docs -type f -name '*.md') | while read -r f; do
    install -D -m 0644 "$repo/$f" "$DOC/$f"
  done
fi
if [ -f "$here/sysctl-edge-time.conf" ]; then
  install -d -m 0755 "$R/etc/sysctl.d"
  install -m 0644 "$here/sysctl-edge-time.conf" "$SYSCTL"
fi
if [ -f "$here/bird-anycast.conf" ]; then
  install -d -m 0755 "$R/etc/bird"
  install -m 0644 "$here/bird-anycast.conf" "$BIRD"
fi
install -d -m 0755 "$STATE"

if [ "$live" = 1 ]; then
  if ! id edge-time >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/edge-time --shell /usr/sbin/nologin edge-time
  fi
  getent group bird >/dev/null && usermod -aG bird edge-time
  chown edge-time:edge-time "$STATE"
  [ -f "$SYSCTL" ] && command -v sysctl >/dev/null && sysctl -q -p "$SYSCTL" || true
  if has_systemd; then
    systemctl daemon-reload
    systemctl enable edge-time.service
    echo "edge-time installed; start it with: systemctl start edge-time"
    exit 0
  fi
fi
echo "edge-time installed into ${root}"
