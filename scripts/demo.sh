#!/usr/bin/env bash
# The podtap demo: installs what is missing, builds, starts a small HTTP/1.1
# service (scripts/peers/http1.py) with clients that keep it busy, captures its
# traffic with eBPF for a few seconds, then analyzes the capture offline into
# request/response exchanges and prints the summary.
#
#   sudo scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh: capture loads eBPF programs; run it as root (sudo scripts/demo.sh)" >&2
  exit 1
fi
scripts/setup.sh
echo "demo: building podtap (release)" >&2
cargo build --release -q -p capture -p analyze

out=target/demo
mkdir -p "$out"
rm -rf "$out/run.parquet" "$out/run.parquet.d" "$out/exchanges.parquet"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

python3 scripts/peers/http1.py server > "$out/server.txt" &
pids+=($!)
server=$!
until grep -q '^port ' "$out/server.txt" 2>/dev/null; do sleep 0.1; done
port=$(awk '/^port / {print $2}' "$out/server.txt")
echo "demo: service pid $server listening on 127.0.0.1:$port" >&2

# One keep-alive connection opened before the capture starts: podtap picks it
# up from its next request on.
python3 scripts/peers/http1.py client --port "$port" --interval 0.5 --repeat 1000 "GET /" > /dev/null &
pids+=($!)

target/release/capture --pid "$server" --duration "${seconds}s" -o "$out/run.parquet" 2> >(tee "$out/capture.log" >&2) &
capture=$!
until grep -q capturing "$out/capture.log" 2>/dev/null; do sleep 0.1; done

# Clients: small pages, downloads, uploads, errors, on several connections.
interval=$(python3 -c "print(max(0.005, ${seconds} * 0.6 / 200))")
for i in 1 2 3 4; do
  python3 scripts/peers/http1.py client --port "$port" --interval "$interval" --repeat 40 \
    "GET /" "GET /bytes/20000" "POST /echo 3000" "GET /status/404" "GET /status/503" > /dev/null &
  pids+=($!)
done
wait "$capture"

echo >&2
echo "demo: analyzing $out/run.parquet" >&2
target/release/analyze "$out/run.parquet" --exchanges "$out/exchanges.parquet"
echo >&2
echo "demo: the capture is in $out/run.parquet (one row per syscall event), the" >&2
echo "demo: decoded exchanges in $out/exchanges.parquet (one row per request/response); see README" >&2
