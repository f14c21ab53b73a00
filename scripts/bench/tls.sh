#!/usr/bin/env bash
# What reading TLS plaintext with the OpenSSL uprobes costs, measured side by
# side in one run: h2load fetches a 1 KiB file from nghttpd over HTTP/2 and
# TLS (both on the system's libssl) for a fixed time, in turns without
# capture, with `capture --no-uprobes` (ciphertext only) and with `capture`
# (ciphertext and plaintext). It prints requests/s each way, the ratios, and
# from a last run with the kernel's BPF statistics on, the time the probes
# take per hit.
#
# The probes sit in the library file, so every process using the same
# libssl hits them, h2load included; the programs return at once for
# processes that are not targets, but the breakpoint is paid.
#
#   scripts/bench/tls.sh [ROUNDS] [SECONDS]      (as root; defaults 3 rounds of 10 s)
#
# Environment: CONNECTIONS (default 8), STREAMS (per connection, default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${CONNECTIONS:-8}
streams=${STREAMS:-10}

scripts/setup.sh >/dev/null
cargo build --release -q -p capture -p analyze
capture=target/release/capture

work=$(mktemp -d /tmp/podtap-bench.XXXXXX)
trap 'kill $(cat "$work/server.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir "$work/www"
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nghttpd -d "$work/www" "$port" "$work/key.pem" "$work/cert.pem" > /dev/null 2>&1 &
echo $! > "$work/server.pid"
server=$(cat "$work/server.pid")
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.1; done

rps() {
  h2load -D "$seconds" -c "$connections" -m "$streams" "https://127.0.0.1:$port/index.html" \
    | awk '/^finished in/ {print $4}'
}

wait_ready() {
  until grep -q capturing "$work/capture.log" 2>/dev/null; do
    kill -0 "$1" 2>/dev/null || { cat "$work/capture.log"; exit 1; }
    sleep 0.1
  done
}

# with FLAGS...: requests/s with capture running.
with() {
  rm -f "$work/capture.log"
  "$capture" --pid "$server" -o "$work/run.parquet" "$@" 2>"$work/capture.log" &
  local cap=$!
  wait_ready "$cap"
  rps
  kill -INT "$cap"; wait "$cap"
  rm -rf "$work/run.parquet"
}

without=(); cipher=(); plain=()
for round in $(seq "$rounds"); do
  without+=("$(rps)")
  cipher+=("$(with --no-uprobes)")
  plain+=("$(with)")
done

rm -f "$work/capture.log"
"$capture" --pid "$server" -o "$work/stats.parquet" 2>"$work/capture.log" &
cap=$!
wait_ready "$cap"
sysctl -qw kernel.bpf_stats_enabled=1
stats_rps=$(rps)
bpftool -j prog show > "$work/progs.json"
sysctl -qw kernel.bpf_stats_enabled=0
kill -INT "$cap"; wait "$cap"

python3 - "$connections" "$streams" "$seconds" "${without[*]}" "${cipher[*]}" "${plain[*]}" \
  "$work/progs.json" "$stats_rps" <<'PY'
import json, statistics, sys
conns, streams, seconds = sys.argv[1:4]
runs = [[float(x) for x in s.split()] for s in sys.argv[4:7]]
progs = json.load(open(sys.argv[7]))
a, b, c = (statistics.median(r) for r in runs)
print(f"nghttpd over TLS (HTTP/2), 1 KiB file, h2load -c{conns} -m{streams}, {len(runs[0])} rounds of {seconds}s (median)")
for label, r, m in zip(["without capture", "capture --no-uprobes", "capture (TLS uprobes)"], runs, [a, b, c]):
    print(f"  {label:<22} {m:10.0f} req/s   {' '.join(f'{x:.0f}' for x in r)}")
print(f"  ratio ciphertext only / without: {b / a:.3f}")
print(f"  ratio plaintext too / without:   {c / a:.3f}")
print(f"  ratio plaintext / ciphertext:    {c / b:.3f}")
print(f"  kernel CPU per probe hit (bpf_stats, at {float(sys.argv[8]):,.0f} req/s; h2load's own SSL calls hit too):")
for p in sorted(progs, key=lambda p: p.get("name", "")):
    n = p.get("run_cnt", 0)
    if p.get("name", "").startswith("ssl_") and n:
        print(f"    {p['name']:<12} {p['run_time_ns'] / n:7.0f} ns  ({n:,} hits)")
PY
