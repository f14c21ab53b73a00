#!/usr/bin/env bash
# What reading gRPC headers with uprobes costs a Go server, measured side by
# side in one run: h2load makes unary SayHello calls to the grpc-go server of
# scripts/peers/grpc/go/ (built by Go 1.26.8 with the newest grpc-go of the
# version matrix, or with PEER=debian by Go 1.19 with grpc-go 1.33.3 from
# Debian's packages) for a fixed time, in turns
# without capture, with `capture --no-uprobes` (syscalls only) and with
# `capture` (syscalls and the header uprobes). It prints calls/s each way,
# the ratios, then, at a fixed rate well below saturation, the server's CPU
# time and the mean latency per call each way, and, from a last run with
# the kernel's BPF statistics on, the time each probe takes per hit.
#
#   scripts/bench/grpc.sh [ROUNDS] [SECONDS]      (as root; defaults 3 rounds of 10 s)
#
# Environment: CONNECTIONS (default 8), STREAMS (concurrent calls per
# connection, default 10), RATE (calls/s of the fixed-rate runs, default 2000),
# PEER (newest or debian, default newest).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${CONNECTIONS:-8}
streams=${STREAMS:-10}
rate=${RATE:-2000}

scripts/setup.sh >/dev/null
# Both at once: building one alone changes feature unification.
cargo build --release -q -p capture -p analyze
capture=target/release/capture
cache=${PODTAP_CACHE:-/var/cache/podtap}
case ${PEER:-newest} in
  newest)
    newest=$(scripts/peers/grpc/matrix.sh versions | tail -1)
    TOOLCHAINS=go1.26.8 FORMS=plain scripts/peers/grpc/matrix.sh build "$cache/go-peers/bench" "$newest" >/dev/null
    peers=$cache/go-peers/bench/go1.26.8/grpc-$newest/plain
    echo "server: grpc-go $newest built by go1.26.8"
    ;;
  debian)
    peers=$cache/go-peers/debian
    GOCACHE=${GOCACHE:-$cache/go/build-1.19} scripts/peers/grpc/build-go-all.sh "$peers"
    echo "server: grpc-go 1.33.3 built by go1.19 (Debian)"
    ;;
  *) echo "PEER must be newest or debian" >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/podtap-bench.XXXXXX)
trap 'kill $(cat "$work/server.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
"$peers/grpc-server" > "$work/server.txt" &
echo $! > "$work/server.pid"
until grep -q '^port ' "$work/server.txt" 2>/dev/null; do sleep 0.1; done
port=$(awk '/^port / {print $2; exit}' "$work/server.txt")
server=$(cat "$work/server.pid")
# One gRPC message: HelloRequest{name: "bench"}.
printf '\x00\x00\x00\x00\x07\x0a\x05bench' > "$work/request"

calls() {
  h2load -D "$seconds" -c "$connections" -m "$streams" -d "$work/request" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/helloworld.Greeter/SayHello" \
    | awk '/^finished in/ {print $4}'
}

# paced: at $rate calls/s, prints "CPU-µs-per-call mean-latency-ms" of the server.
paced() {
  local before after out
  before=$(awk '{print $14 + $15}' "/proc/$server/stat")
  out=$(h2load -D "$seconds" -c "$connections" -m 1 --rps "$((rate / connections))" -d "$work/request" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/helloworld.Greeter/SayHello")
  after=$(awk '{print $14 + $15}' "/proc/$server/stat")
  local done mean
  done=$(awk '/^requests:/ {print $8}' <<<"$out")
  mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
  python3 -c "print(($after - $before) / $(getconf CLK_TCK) / $done * 1e6, '$mean')"
}

wait_ready() {
  until grep -q capturing "$work/capture.log"; do
    kill -0 "$1" 2>/dev/null || { cat "$work/capture.log"; exit 1; }
    sleep 0.1
  done
}

# with LOAD FLAGS...: runs LOAD (calls or paced) with capture running.
with() {
  local load=$1
  shift
  "$capture" --pid "$server" -o "$work/run.parquet" "$@" 2>"$work/capture.log" &
  local cap=$!
  wait_ready "$cap"
  "$load"
  kill -INT "$cap"; wait "$cap"
  rm -rf "$work/run.parquet"
}

without=(); syscalls=(); uprobes=()
for round in $(seq "$rounds"); do
  without+=("$(calls)")
  syscalls+=("$(with calls --no-uprobes)")
  uprobes+=("$(with calls)")
done
paced_without=$(paced)
paced_syscalls=$(with paced --no-uprobes)
paced_uprobes=$(with paced)

# The probes' own cost per hit (kernel.bpf_stats_enabled), in a separate run.
"$capture" --pid "$server" -o "$work/stats.parquet" 2>"$work/capture.log" &
cap=$!
wait_ready "$cap"
sysctl -qw kernel.bpf_stats_enabled=1
stats_calls=$(calls)
bpftool -j prog show > "$work/progs.json"
sysctl -qw kernel.bpf_stats_enabled=0
kill -INT "$cap"; wait "$cap"
headers=$(target/release/analyze "$work/stats.parquet" 2>/dev/null | awk '/gRPC uprobe headers/ {print $4}' || true)

python3 - "$connections" "$streams" "$seconds" "${without[*]}" "${syscalls[*]}" "${uprobes[*]}" \
  "$work/progs.json" "$stats_calls" "${headers:-?}" "$rate" "$paced_without" "$paced_syscalls" "$paced_uprobes" \
  "$("$capture" --inspect "$peers/grpc-server")" <<'PY'
import json, statistics, sys
conns, streams, seconds = sys.argv[1:4]
runs = [[float(x) for x in s.split()] for s in sys.argv[4:7]]
progs = json.load(open(sys.argv[7]))
stats_calls, headers = float(sys.argv[8]), sys.argv[9]
a, b, c = (statistics.median(r) for r in runs)
inspected = json.loads(sys.argv[14])
print(f"grpc-go {inspected['grpc_version']} server built by {inspected['go_version']}, unary SayHello, "
      f"h2load -c{conns} -m{streams}, {len(runs[0])} rounds of {seconds}s (median)")
for label, r, m in zip(["without capture", "capture --no-uprobes", "capture (uprobes)"], runs, [a, b, c]):
    print(f"  {label:<22} {m:10.0f} calls/s   {' '.join(f'{x:.0f}' for x in r)}")
print(f"  ratio syscalls only / without: {b / a:.3f}")
print(f"  ratio uprobes / without:       {c / a:.3f}")
print(f"  ratio uprobes / syscalls only: {c / b:.3f}")
rate = sys.argv[10]
print(f"  at {rate} calls/s: server CPU per call, mean latency")
for label, v in zip(["without capture", "capture --no-uprobes", "capture (uprobes)"], sys.argv[11:14]):
    cpu, mean = v.split()
    print(f"    {label:<22} {float(cpu):7.1f} µs   {mean}")
print(f"  header blocks read in the statistics run: {headers} ({stats_calls:,.0f} calls/s)")
print("  kernel CPU per probe hit (bpf_stats):")
for p in sorted(progs, key=lambda p: p.get("name", "")):
    runs = p.get("run_cnt", 0)
    if p.get("name", "").startswith("go_") and runs:
        print(f"    {p['name']:<26} {p['run_time_ns'] / runs:7.0f} ns  ({runs:,} hits)")
PY
