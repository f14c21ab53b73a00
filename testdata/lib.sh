# Helpers for the fixture recording scripts (testdata/*/record.sh). Each
# script records real traffic with podtap's own `capture` and writes next to
# itself `capture.parquet` and `expected.json`, the exchanges as the client
# (or tshark) saw them, made without podtap's decoders.
#
# Run a record.sh as root from anywhere; it builds capture first.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=$ROOT/scripts/peers
CAPTURE=$ROOT/target/release/capture
VENV=${PODTAP_VENV:-/opt/podtap-venv}
WORK=$(mktemp -d /tmp/podtap-fixture.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

(cd "$ROOT" && cargo build --release -q -p capture)

# wait_port FILE: waits for a "port N" line in FILE and prints N.
wait_port() {
  until grep -q '^port ' "$1" 2>/dev/null; do sleep 0.1; done
  awk '/^port / {print $2; exit}' "$1"
}

# start_capture ARGS...: records into $HERE/capture.parquet until stop_capture.
start_capture() {
  rm -rf "$HERE/capture.parquet" "$HERE/capture.parquet.d"
  "$CAPTURE" "$@" -o "$HERE/capture.parquet" 2>"$WORK/capture.log" &
  CAPTURE_PID=$!
  until grep -q capturing "$WORK/capture.log"; do
    kill -0 "$CAPTURE_PID" 2>/dev/null || { cat "$WORK/capture.log" >&2; exit 1; }
    sleep 0.1
  done
}

stop_capture() {
  sleep 0.5
  kill -INT "$CAPTURE_PID"
  wait "$CAPTURE_PID"
  cat "$WORK/capture.log" >&2
}

# write_expected MATCH FILE...: joins the exchange lists in FILEs into
# $HERE/expected.json with the comparison rule MATCH (see testdata/README.md).
write_expected() {
  local match=$1
  shift
  python3 - "$match" "$HERE/expected.json" "$@" <<'PY'
import json, sys
match, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
exchanges = [x for f in files for x in json.load(open(f))]
json.dump({"match": match, "exchanges": exchanges}, open(out, "w"), indent=1)
print(f"expected.json: {len(exchanges)} exchange(s), match {match}", file=sys.stderr)
PY
}

# free_port: prints a TCP port nobody listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_hypercorn PORT: serves scripts/peers/asgi_app.py over h2c; sets SERVER.
start_hypercorn() {
  (cd "$PEERS" && exec "$VENV/bin/hypercorn" --bind "127.0.0.1:$1" asgi_app:app) > "$WORK/hypercorn.log" 2>&1 &
  SERVER=$!
  until grep -q "Running on" "$WORK/hypercorn.log" 2>/dev/null; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/hypercorn.log" >&2; exit 1; }
    sleep 0.1
  done
}

# curl_log FILE: turns `curl -w` lines ("METHOD URL CODE DOWN UP") into a JSON
# exchange list.
curl_log() {
  python3 - "$1" <<'PY'
import json, sys, urllib.parse
out = []
for line in open(sys.argv[1]):
    method, url, code, down, up = line.split()
    out.append({"protocol": "http2", "method": method, "path": urllib.parse.urlsplit(url).path,
                "status": int(code), "request_body_size": int(up), "response_body_size": int(down)})
json.dump(out, sys.stdout)
PY
}

# start_grpc_python: the grpcio Greeter server; sets SERVER and PORT.
start_grpc_python() {
  "$VENV/bin/python" "$PEERS/grpc/server.py" > "$WORK/grpc-server.txt" &
  SERVER=$!
  PORT=$(wait_port "$WORK/grpc-server.txt")
}

# start_grpc_go: builds and starts the grpc-go Greeter server; sets SERVER and PORT.
start_grpc_go() {
  "$PEERS/grpc/build-go.sh" "$WORK/greeter-go"
  "$WORK/greeter-go" > "$WORK/grpc-server.txt" &
  SERVER=$!
  PORT=$(wait_port "$WORK/grpc-server.txt")
}

GRPC_CLIENT=("$VENV/bin/python" "$PEERS/grpc/client.py")
