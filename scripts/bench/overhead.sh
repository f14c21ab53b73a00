#!/usr/bin/env bash
# Overhead of capture on a real HTTP/1.1 server, measured side by side in one
# run: wrk drives nginx at fixed concurrency, alternately without and with
# `capture` attached to nginx, and the script prints requests/s both ways,
# their ratio, and what capture recorded (events/s, bytes/s written, lost).
#
#   scripts/bench/overhead.sh [ROUNDS] [SECONDS]      (as root; defaults 3 rounds of 10 s)
#
# Environment: CONNECTIONS (default 32), BODY (response body bytes, default 1024).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${CONNECTIONS:-32}
body=${BODY:-1024}

scripts/setup.sh >/dev/null
cargo build --release -q -p capture
capture=target/release/capture

work=$(mktemp -d /tmp/podtap-bench.XXXXXX)
trap 'kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
head -c "$body" /dev/zero | tr '\0' 'x' > "$work/index.html"
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  # Bodies go through write()/writev(), which capture sees; sendfile would
  # show up as holes in seq instead.
  sendfile off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    root $work;
    location / { }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5
master=$(cat "$work/nginx.pid")

rps() {
  wrk -t1 -c"$connections" -d"${seconds}s" "http://127.0.0.1:$port/index.html" \
    | awk '/^Requests\/sec/ {print $2}'
}

without=()
with=()
events=0; written=0; lost=0; captured_s=0
for round in $(seq "$rounds"); do
  without+=("$(rps)")
  out="$work/run-$round.parquet"
  "$capture" --pid "$master" -o "$out" 2>"$work/capture.log" &
  cap=$!
  until grep -q capturing "$work/capture.log"; do
    kill -0 "$cap" 2>/dev/null || { cat "$work/capture.log"; exit 1; }
    sleep 0.1
  done
  start=$(date +%s.%N)
  with+=("$(rps)")
  kill -INT "$cap"; wait "$cap"
  end=$(date +%s.%N)
  summary=$(grep '^captured' "$work/capture.log")
  e=$(sed -E 's/.* ([0-9,]+) events.*/\1/' <<<"$summary" | tr -d ,)
  l=$(sed -E 's/.* ([0-9,]+) lost$/\1/' <<<"$summary" | tr -d ,)
  events=$((events + e)); lost=$((lost + l))
  written=$((written + $(stat -c %s "$out")))
  captured_s=$(python3 -c "print($captured_s + $end - $start)")
  rm -f "$out"
done

python3 - "$connections" "$body" "$events" "$written" "$lost" "$captured_s" "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
conns, body, events, written, lost, secs = sys.argv[1:7]
without = [float(x) for x in sys.argv[7].split()]
with_ = [float(x) for x in sys.argv[8].split()]
a, b = statistics.median(without), statistics.median(with_)
secs = float(secs)
print(f"nginx, {body}-byte responses, wrk -c{conns}, {len(without)} rounds (median)")
print(f"  without capture: {a:10.0f} req/s   {' '.join(f'{x:.0f}' for x in without)}")
print(f"  with capture:    {b:10.0f} req/s   {' '.join(f'{x:.0f}' for x in with_)}")
print(f"  ratio:           {b / a:10.3f}")
print(f"  capture: {int(events) / secs:,.0f} events/s, {int(written) / secs / 1e6:.2f} MB/s written, {lost} events lost")
PY
