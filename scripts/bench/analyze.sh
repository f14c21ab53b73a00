#!/usr/bin/env bash
# Throughput and memory of `analyze`, against tshark on the same traffic, in
# one run. Real traffic is generated for SECONDS (nginx under wrk for HTTP/1,
# nghttpd under h2load for HTTP/2), recorded at the same time by `capture`
# and by dumpcap (a loopback pcap). Then `analyze` decodes the capture and
# tshark the pcap; the script prints exchanges/s, MB/s, peak memory and the
# ratio. The capture keeps whole writes (--max-payload 65536): nghttpd
# batches many frames per write, and a cut write loses HTTP/2 frames. A
# second analyze run over four copies of the capture shows whether memory
# grows with the input (it must not: decoding streams). A third run writes
# every offline output (exchange file, xlsx report, OpenMetrics in both metric
# families) to show what RED and the outputs add to decoding.
#
#   scripts/bench/analyze.sh [SECONDS]      (as root; default 15)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}

scripts/setup.sh >/dev/null
need=()
for p in tshark nghttp2-server nghttp2-client time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p capture -p analyze

work=$(mktemp -d /tmp/podtap-bench-analyze.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(port)
p2=$(port)
head -c 1024 /dev/urandom > "$work/index.html"
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http { access_log off; sendfile off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$p1; root $work; location / { } } }
CONF
nginx -c "$work/nginx.conf" -p "$work"
nghttpd --no-tls -d "$work" "$p2" > /dev/null 2>&1 &
h2=$!
sleep 0.5

dumpcap -i lo -f "tcp port $p1 or tcp port $p2" -w "$work/traffic.pcap" 2>"$work/dumpcap.log" &
pcap=$!
target/release/capture --pid "$(cat "$work/nginx.pid")" --pid "$h2" --ring-buffer-size 67108864 --max-payload 65536 \
  -o "$work/traffic.parquet" 2>"$work/capture.log" &
cap=$!
until grep -q capturing "$work/capture.log"; do kill -0 "$cap" || { cat "$work/capture.log"; exit 1; }; sleep 0.1; done
sleep 1
wrk -t1 -c8 -d"${seconds}s" "http://127.0.0.1:$p1/index.html" > /dev/null &
h2load -c4 -m10 -D "$seconds" "http://127.0.0.1:$p2/index.html" > /dev/null
wait %?wrk 2>/dev/null || true
sleep 1
kill -INT "$cap"; wait "$cap"
kill -INT "$pcap"; wait "$pcap" || true
grep -E '^captured' "$work/capture.log" >&2
# Packets the pcap missed make tshark's count a little lower.
grep -E 'received/dropped' "$work/dumpcap.log" | sed 's/^/dumpcap: /' >&2 || true

# measure OUT CMD...: runs CMD with stdout to OUT; prints "seconds peak-KiB".
measure() { local out=$1; shift; /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$out"; cat "$work/time"; }
read -r a_secs a_kb < <(measure "$work/summary.txt" target/release/analyze --quiet "$work/traffic.parquet")
exchanges=$(awk 'NR==1 {print $1}' "$work/summary.txt")
moved=$(awk '/bytes moved/ {print $3}' "$work/summary.txt")
read -r t_secs t_kb < <(measure "$work/tshark.txt" sh -c "tshark -r '$work/traffic.pcap' -d tcp.port==$p1,http \
  -d tcp.port==$p2,http2 -Y 'http.response or http2.headers.status' -T fields -e http.response.code -e http2.headers.status \
  2>/dev/null | tr ',\\t' '\\n\\n' | grep -c .")
tshark_responses=$(cat "$work/tshark.txt")
read -r o_secs o_kb < <(measure /dev/null target/release/analyze --quiet "$work/traffic.parquet" \
  --exchanges "$work/exchanges.parquet" --xlsx "$work/report.xlsx" --openmetrics "$work/run.om" --metric-names both)
o_sizes=$(stat -c %s "$work/exchanges.parquet" "$work/report.xlsx" "$work/run.om" | paste -sd,)
for i in 1 2 3 4; do cp "$work/traffic.parquet" "$work/copy$i.parquet"; done
read -r a4_secs a4_kb < <(measure /dev/null target/release/analyze --quiet "$work"/copy?.parquet)

python3 - "$moved" "$(stat -c %s "$work/traffic.parquet")" "$(stat -c %s "$work/traffic.pcap")" "$exchanges" "$a_secs" "$a_kb" \
  "$tshark_responses" "$t_secs" "$t_kb" "$a4_secs" "$a4_kb" "$o_secs" "$o_kb" "$o_sizes" <<'PY'
import sys
moved, cap, pcap, ex, a_s, a_kb, t_resp, t_s, t_kb, a4_s, a4_kb, o_s, o_kb, o_sizes = sys.argv[1:]
moved, cap, pcap, ex, t_resp = int(moved), int(cap), int(pcap), int(ex), int(t_resp)
a_s, t_s, a4_s, o_s = float(a_s), float(t_s), float(a4_s), float(o_s)
x_size, xlsx_size, om_size = (int(s) / 1e6 for s in o_sizes.split(","))
print(f"traffic: {ex:,} exchanges (HTTP/1 and HTTP/2), {moved/1e6:.1f} MB of payload; capture file {cap/1e6:.1f} MB, pcap {pcap/1e6:.1f} MB")
print(f"  analyze: {a_s:6.2f} s  {ex/a_s:10,.0f} exchanges/s  {moved/1e6/a_s:7.1f} MB/s of payload  peak {int(a_kb)/1024:7.1f} MiB")
print(f"  tshark:  {t_s:6.2f} s  {t_resp/t_s:10,.0f} responses/s  {moved/1e6/t_s:7.1f} MB/s of payload  peak {int(t_kb)/1024:7.1f} MiB")
print(f"  ratio:   analyze is {t_s/a_s:.1f}x faster than tshark on the same traffic ({t_resp:,} responses decoded by tshark)")
print(f"  memory:  4 copies ({4*cap/1e6:.1f} MB) in {a4_s:.2f} s, peak {int(a4_kb)/1024:.1f} MiB (one copy: {int(a_kb)/1024:.1f} MiB)")
print(f"  outputs: RED + exchange file ({x_size:.1f} MB) + xlsx ({xlsx_size:.1f} MB) + OpenMetrics ({om_size:.1f} MB) in {o_s:.2f} s, "
      f"{o_s/a_s:.1f}x decoding alone, peak {int(o_kb)/1024:.1f} MiB")
PY
