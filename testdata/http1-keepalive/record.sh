#!/usr/bin/env bash
# HTTP/1.1 keep-alive: one connection, Content-Length and chunked bodies,
# an upload, HEAD, 204, 404, 503. Server: scripts/peers/http1.py (the target).
# Golden: the client's own log.
source "$(dirname "$0")/../lib.sh"
python3 "$PEERS/http1.py" server > "$WORK/server.txt" &
SERVER=$!
PORT=$(wait_port "$WORK/server.txt")
start_capture --pid "$SERVER" --max-payload 65536
python3 "$PEERS/http1.py" client --port "$PORT" --log "$WORK/client" \
  "GET /" "GET /bytes/5000" "POST /echo 2000" "GET /chunked/7000" "HEAD /" \
  "GET /status/204" "GET /status/404" "GET /status/503" "GET /bytes/40000" "GET /" > /dev/null
stop_capture
write_expected exact "$WORK/client/exchanges.json"
