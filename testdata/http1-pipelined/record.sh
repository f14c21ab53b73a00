#!/usr/bin/env bash
# HTTP/1.1 pipelining: the client sends every request before reading any
# response, HEAD among them. Golden: the client's own log.
source "$(dirname "$0")/../lib.sh"
python3 "$PEERS/http1.py" server > "$WORK/server.txt" &
SERVER=$!
PORT=$(wait_port "$WORK/server.txt")
start_capture --pid "$SERVER" --max-payload 65536
python3 "$PEERS/http1.py" client --port "$PORT" --pipeline --log "$WORK/client" \
  "GET /a" "HEAD /b" "GET /chunked/3000" "POST /echo 500" "GET /status/404" "GET /bytes/9000" > /dev/null
stop_capture
write_expected exact "$WORK/client/exchanges.json"
