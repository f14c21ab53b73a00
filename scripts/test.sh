#!/usr/bin/env bash
# Runs every test of podtap: unit tests and the end-to-end tests, which load
# real eBPF programs into this kernel and drive real servers and clients.
#
#   sudo scripts/test.sh [CARGO TEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the end-to-end tests load eBPF programs; run it as root (sudo scripts/test.sh)" >&2
  exit 1
fi
scripts/setup.sh
cargo test --workspace --exclude capture-ebpf "$@"
