#!/usr/bin/env bash
# Installs what building and testing podtap needs on a Debian 12 machine and is
# quick when everything is already there. Safe to run again at any time.
#
#   scripts/setup.sh            build toolchain + test peers
#
# Needs root for apt-get and for mounting tracefs.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages: the LLVM that bpf-linker links against, the real peers the
# tests and benchmarks talk to, and what builds the Go peers offline
# (scripts/peers/grpc/build-go-all.sh: Go 1.19, grpc-go, protoc).
packages=(
  llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev pkg-config
  curl wrk nginx-light python3 python3-venv bpftool
  prometheus prometheus-pushgateway
  golang-1.19-go golang-google-grpc-dev golang-golang-x-net-dev
  golang-goprotobuf-dev golang-google-protobuf-dev protobuf-compiler
  openssl nghttp2-server nghttp2-client nodejs
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Some start a service when installed (nginx on 80, Prometheus on 9090, the
  # Pushgateway on 9091); tests and the demo run their own by hand, so the
  # services of packages installed just now are stopped again.
  for p in "${missing[@]}"; do
    case $p in
      nginx-light) service=nginx ;;
      prometheus | prometheus-pushgateway) service=$p ;;
      *) continue ;;
    esac
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$service" >/dev/null 2>&1 || true; fi
  done
  pkill -x nginx 2>/dev/null || true
fi

# The nightly toolchain that builds the eBPF crate (-Z build-std=core needs
# rust-src). It is pinned in capture/build.rs: its LLVM must be the one
# bpf-linker is built against.
toolchain=$(sed -n 's/^const EBPF_TOOLCHAIN: &str = "\(.*\)";/\1/p' "$(dirname "$0")/../capture/build.rs")
installed=$(rustup component list --toolchain "$toolchain" --installed 2>/dev/null || true)
if ! grep -q '^rust-src' <<<"$installed" || ! grep -q '^clippy' <<<"$installed"; then
  log "installing the $toolchain toolchain with rust-src and clippy"
  rustup toolchain install "$toolchain" --profile minimal --component rust-src --component clippy >/dev/null
fi

# bpf-linker, built against Debian's LLVM 22.
BPF_LINKER_VERSION=0.13.0
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (a few minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
      --no-default-features --features llvm-22 >/dev/null
fi

# A Python venv for tools Debian does not package: kubernetes-validate checks
# scripts/k8s/ against the Kubernetes API schemas (bundled, no cluster needed).
VENV=${PODTAP_VENV:-/opt/podtap-venv}
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
# hypercorn: an HTTP/2 server that also takes h2c by HTTP/1.1 Upgrade (for
# the redaction tests; nghttpd takes prior knowledge only).
HYPERCORN_VERSION=0.18.0
if [ "$("$VENV/bin/hypercorn" --version 2>/dev/null || true)" != "Hypercorn $HYPERCORN_VERSION" ] \
  && ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('hypercorn') != '$HYPERCORN_VERSION')" 2>/dev/null; then
  log "installing hypercorn $HYPERCORN_VERSION into $VENV"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "hypercorn==$HYPERCORN_VERSION"
fi

# Build caches live outside the clone, in $PODTAP_CACHE (default
# /var/cache/podtap), so that a fresh clone on a warm machine builds quickly:
# cargo's target directory (the clone's target/ is a link to it) and the Go
# build and module caches of the Go test peers (scripts/peers/grpc/).
cache=${PODTAP_CACHE:-/var/cache/podtap}
mkdir -p "$cache/target" "$cache/go"
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e "$root/target" ] && [ ! -L "$root/target" ]; then
  ln -s "$cache/target" "$root/target"
fi

# tracefs: the kernel's tracepoints are attached through it.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  log "mounting tracefs on /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing
fi

log "ready"
