#!/usr/bin/env bash
# Overhead of capture on a real HTTP/1.1 server, measured side by side in one
# run: wrk drives nginx at fixed concurrency, alternately without and with
# `capture` attached to nginx, and the script prints requests/s both ways,
# their ratio, and what capture recorded (events/s, bytes/s written, lost).
# A last run with the kernel's BPF statistics on gives the CPU time the
# programs add per syscall, and the capture process's own CPU use. Then
# capture's own CPU time per event with header redaction on (the default)
# and off (--no-redact), alternating, on requests that carry Authorization
# and Cookie headers.
#
#   scripts/bench/overhead.sh [ROUNDS] [SECONDS]      (as root; defaults 3 rounds of 10 s)
#
# Environment: SERVER=nginx (default; one worker, static file, the worst case:
# almost no work per request besides the syscalls capture records) or
# SERVER=python (scripts/peers/http1.py, a threaded Python application server),
# CONNECTIONS (default 32), BODY (response body bytes, default 1024).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${CONNECTIONS:-32}
body=${BODY:-1024}
server=${SERVER:-nginx}

scripts/setup.sh >/dev/null
cargo build --release -q -p capture
capture=target/release/capture

work=$(mktemp -d /tmp/podtap-bench.XXXXXX)
trap 'kill $(cat "$work/server.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$server" = python ]; then
  python3 scripts/peers/http1.py server --port "$port" > "$work/server.txt" &
  echo $! > "$work/server.pid"
  until grep -q '^port ' "$work/server.txt" 2>/dev/null; do sleep 0.1; done
  url="http://127.0.0.1:$port/bytes/$body"
  label="python http1.py (threads)"
else
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
cp "$work/nginx.pid" "$work/server.pid"
url="http://127.0.0.1:$port/index.html"
label="nginx (1 worker, static file)"
fi
master=$(cat "$work/server.pid")

rps() {
  wrk -t1 -c"$connections" -d"${seconds}s" "$@" "$url" \
    | awk '/^Requests\/sec/ {print $2}'
}

# The capture process's CPU time so far, in clock ticks.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

wait_ready() {
  until grep -q capturing "$work/capture.log"; do
    kill -0 "$1" 2>/dev/null || { cat "$work/capture.log"; exit 1; }
    sleep 0.1
  done
}

without=()
with=()
events=0; written=0; lost=0; captured_s=0
for round in $(seq "$rounds"); do
  without+=("$(rps)")
  out="$work/run-$round.parquet"
  "$capture" --pid "$master" -o "$out" 2>"$work/capture.log" &
  cap=$!
  wait_ready "$cap"
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

# Per-syscall cost of the programs (kernel.bpf_stats_enabled) and the capture
# process's CPU time, in a separate run so the statistics do not slow the
# ratio above.
"$capture" --pid "$master" -o "$work/stats.parquet" 2>"$work/capture.log" &
cap=$!
wait_ready "$cap"
sysctl -qw kernel.bpf_stats_enabled=1
cpu0=$(awk '{print $14 + $15}' "/proc/$cap/stat")
stats_rps=$(rps)
cpu1=$(awk '{print $14 + $15}' "/proc/$cap/stat")
bpftool -j prog show > "$work/progs.json"
sysctl -qw kernel.bpf_stats_enabled=0
kill -INT "$cap"; wait "$cap"
cpu_share=$(python3 -c "print(($cpu1 - $cpu0) / $(getconf CLK_TCK) / $seconds)")

# Capture's CPU per event, redaction on and off, side by side.
per_event_on=()
per_event_off=()
for round in $(seq "$rounds"); do
  for mode in on off; do
    flags=()
    [ "$mode" = off ] && flags=(--no-redact)
    "$capture" --pid "$master" "${flags[@]}" -o "$work/redact.parquet" 2>"$work/capture.log" &
    cap=$!
    wait_ready "$cap"
    c0=$(cpu_ticks "$cap")
    rps -H "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl" \
      -H "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark" > /dev/null
    c1=$(cpu_ticks "$cap")
    kill -INT "$cap"; wait "$cap"
    e=$(grep '^captured' "$work/capture.log" | sed -E 's/.* ([0-9,]+) events.*/\1/' | tr -d ,)
    per=$(python3 -c "print(($c1 - $c0) / $(getconf CLK_TCK) / max($e, 1) * 1e6)")
    if [ "$mode" = on ]; then per_event_on+=("$per"); else per_event_off+=("$per"); fi
    rm -f "$work/redact.parquet"
  done
done

python3 - "$label" "$connections" "$body" "$events" "$written" "$lost" "$captured_s" "${without[*]}" "${with[*]}" \
  "$work/progs.json" "$cpu_share" "$stats_rps" "$seconds" "${per_event_on[*]}" "${per_event_off[*]}" <<'PY'
import json, statistics, sys
label = sys.argv.pop(1)
conns, body, events, written, lost, secs = sys.argv[1:7]
without = [float(x) for x in sys.argv[7].split()]
with_ = [float(x) for x in sys.argv[8].split()]
progs = json.load(open(sys.argv[9]))
cpu_share, stats_rps = float(sys.argv[10]), float(sys.argv[11])
seconds_per_round = sys.argv[12]
red_on = [float(x) for x in sys.argv[13].split()]
red_off = [float(x) for x in sys.argv[14].split()]
a, b = statistics.median(without), statistics.median(with_)
secs = float(secs)
print(f"{label}, {body}-byte responses, wrk -t1 -c{conns}, {len(without)} rounds of {seconds_per_round}s (median)")
print(f"  without capture: {a:10.0f} req/s   {' '.join(f'{x:.0f}' for x in without)}")
print(f"  with capture:    {b:10.0f} req/s   {' '.join(f'{x:.0f}' for x in with_)}")
print(f"  ratio:           {b / a:10.3f}")
print(f"  capture: {int(events) / secs:,.0f} events/s, {int(written) / secs / 1e6:.2f} MB/s written, {lost} events lost")
print(f"  capture process CPU: {cpu_share * 100:.1f}% of one core at {stats_rps:,.0f} req/s")
on, off = statistics.median(red_on), statistics.median(red_off)
print(f"  capture CPU per event, requests with Authorization and Cookie ({len(red_on)} rounds, median):")
print(f"    redaction on (default): {on:6.2f} us   {' '.join(f'{x:.2f}' for x in red_on)}")
print(f"    --no-redact:            {off:6.2f} us   {' '.join(f'{x:.2f}' for x in red_off)}")
print(f"    ratio:                  {on / off:6.3f}")
print("  kernel CPU per traced syscall (bpf_stats, all processes; wrk's own reads and writes are not targets):")
for p in sorted(progs, key=lambda p: p.get("name", "")):
    runs = p.get("run_cnt", 0)
    if p.get("name", "").startswith("sys_") and runs:
        print(f"    {p['name']:<18} {p['run_time_ns'] / runs:7.0f} ns  ({runs:,} runs)")
PY
