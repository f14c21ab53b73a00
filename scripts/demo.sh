#!/usr/bin/env bash
# The podtap demo: installs what is missing, builds, starts a small HTTP/1.1
# service (scripts/peers/http1.py) with clients that keep it busy, a Go
# gRPC service (grpc-go) whose client connected and made 50 calls before the
# capture starts, and an HTTPS service on OpenSSL; captures all three with
# eBPF for a few seconds (the gRPC headers HPACK hides on that old connection
# and the HTTPS plaintext are read by uprobes), then analyzes the
# capture offline: RED on stdout, an xlsx report, the exchanges as Parquet,
# and metrics pushed to a Pushgateway that a Prometheus scrapes (both started
# here, from Debian's packages), with the history remote-written at the
# capture's own time.
#
#   sudo scripts/demo.sh [SECONDS]
#
# PODTAP_DEMO_KEEP=1 leaves Prometheus and the Pushgateway running afterwards.
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
echo "demo: building the Go gRPC peers" >&2
GOCACHE=${GOCACHE:-${PODTAP_CACHE:-/var/cache/podtap}/go/build-1.19} scripts/peers/grpc/build-go-all.sh target/go-peers

out=target/demo
mkdir -p "$out"
rm -rf "$out/run.parquet" "$out/run.parquet.d" "$out/exchanges.parquet" "$out/report.xlsx" "$out/run.om" \
  "$out/prometheus-data" "$out/grpc-commands" "$out/capture.log" "$out/https-server.txt"
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

# The gRPC service, and a client whose one connection is old news by the time
# the capture starts: HPACK has indexed its paths and statuses already.
target/go-peers/grpc-server > "$out/grpc-server.txt" &
pids+=($!)
grpc_server=$!
until grep -q '^port ' "$out/grpc-server.txt" 2>/dev/null; do sleep 0.1; done
grpc_port=$(awk '/^port / {print $2}' "$out/grpc-server.txt")
mkfifo "$out/grpc-commands"
target/go-peers/grpc-client -addr "127.0.0.1:$grpc_port" -warmup 50 < "$out/grpc-commands" > "$out/grpc-client.txt" &
pids+=($!)
exec 8> "$out/grpc-commands"
until grep -q '^ready' "$out/grpc-client.txt" 2>/dev/null; do sleep 0.1; done
echo "demo: gRPC service pid $grpc_server on 127.0.0.1:$grpc_port, its client connected and made 50 calls" >&2

# An HTTPS service on the system's OpenSSL, with a certificate made here: its
# plaintext is read by uprobes.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
python3 scripts/peers/https.py "$out/cert.pem" "$out/key.pem" > "$out/https-server.txt" &
pids+=($!)
https_server=$!
until grep -q '^port ' "$out/https-server.txt" 2>/dev/null; do sleep 0.1; done
https_port=$(awk '/^port / {print $2}' "$out/https-server.txt")
echo "demo: HTTPS service pid $https_server on 127.0.0.1:$https_port" >&2

target/release/capture --pid "$server" --pid "$grpc_server" --pid "$https_server" --duration "${seconds}s" -o "$out/run.parquet" \
  2> >(tee "$out/capture.log" >&2) &
capture=$!
until grep -q capturing "$out/capture.log" 2>/dev/null; do sleep 0.1; done

# Clients: small pages, downloads, uploads, errors, on several connections.
interval=$(python3 -c "print(max(0.005, ${seconds} * 0.6 / 200))")
for i in 1 2 3 4; do
  python3 scripts/peers/http1.py client --port "$port" --interval "$interval" --repeat 40 \
    "GET /" "GET /bytes/20000" "POST /echo 3000" "GET /status/404" "GET /status/503" > /dev/null &
  pids+=($!)
done
# HTTPS: a few connections of several requests each.
for i in $(seq 1 8); do
  curl -sk "https://127.0.0.1:$https_port/secure/$i" "https://127.0.0.1:$https_port/secure/$i/more" \
    -o /dev/null -o /dev/null
  curl -sk --data-binary "order $i" "https://127.0.0.1:$https_port/orders" -o /dev/null
  sleep "$(python3 -c "print(${seconds} * 0.6 / 8)")"
done &
pids+=($!)
# gRPC calls on the old connection: unary, server-streaming and failing.
grpc_interval=$(python3 -c "print(${seconds} * 0.6 / 40)")
for i in $(seq 1 40); do
  echo "unary 0 demo$i"
  echo "stream 0 demo$i 3"
  if [ $((i % 4)) = 0 ]; then echo "fail 0 demo$i"; fi
  sleep "$grpc_interval"
done >&8 &
pids+=($!)
wait "$capture"
exec 8>&-

# A Pushgateway and a Prometheus scraping it with scripts/prometheus/prometheus.yml,
# on their usual ports when those are free.
pick_port() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}
gw_port=$(pick_port 9091)
prom_port=$(pick_port 9090)
servers=()
# Debian's Pushgateway keeps what every instance was pushed in one file by
# default; the demo's starts empty.
prometheus-pushgateway --web.listen-address="127.0.0.1:$gw_port" --persistence.file= > "$out/pushgateway.log" 2>&1 &
servers+=($!)
sed -e "s/127.0.0.1:9091/127.0.0.1:$gw_port/" -e 's/scrape_interval: 15s/scrape_interval: 2s/' \
  scripts/prometheus/prometheus.yml > "$out/prometheus.yml"
prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver > "$out/prometheus.log" 2>&1 &
servers+=($!)
if [ "${PODTAP_DEMO_KEEP:-0}" != 1 ]; then pids+=("${servers[@]}"); fi
for url in "http://127.0.0.1:$gw_port" "http://127.0.0.1:$prom_port"; do
  until curl -sf "$url/-/ready" > /dev/null; do sleep 0.2; done
done

echo >&2
echo "demo: analyzing $out/run.parquet" >&2
target/release/analyze "$out/run.parquet" --exchanges "$out/exchanges.parquet" --xlsx "$out/report.xlsx" \
  --openmetrics "$out/run.om" --metric-names both --step 1s \
  --push --pushgateway "http://127.0.0.1:$gw_port" \
  --remote-write "http://127.0.0.1:$prom_port/api/v1/write"

# What Prometheus now says, once it has scraped the gateway.
query='sum by (http_response_status_code) (http_server_request_duration_seconds_count{job="podtap"})'
for _ in $(seq 1 50); do
  answer=$(curl -sf --get --data-urlencode "query=$query" "http://127.0.0.1:$prom_port/api/v1/query" || true)
  case $answer in *'"result":[{'*) break ;; esac
  sleep 0.2
done
echo >&2
echo "demo: Prometheus (http://127.0.0.1:$prom_port) answers $query:" >&2
python3 -c '
import json, sys
for r in json.loads(sys.argv[1])["data"]["result"]:
    print("demo:   status %s: %s requests" % (r["metric"].get("http_response_status_code", "?"), r["value"][1]))
' "$answer" >&2
echo >&2
echo "demo: written in $out:" >&2
echo "demo:   run.parquet        the capture (one row per syscall event)" >&2
echo "demo:   exchanges.parquet  one row per request/response" >&2
echo "demo:   report.xlsx        Summary (RED, charts), HTTP and gRPC sheets" >&2
echo "demo:   run.om             timestamped series for promtool tsdb create-blocks-from openmetrics" >&2
if [ "${PODTAP_DEMO_KEEP:-0}" = 1 ]; then
  echo "demo: Prometheus http://127.0.0.1:$prom_port and Pushgateway http://127.0.0.1:$gw_port keep running (pids ${servers[*]})" >&2
fi
