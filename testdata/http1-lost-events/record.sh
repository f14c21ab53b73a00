#!/usr/bin/env bash
# A capture that loses events: a one-page ring buffer cannot hold 16 KiB
# events, so whole syscalls go missing. The decoder must report what it can,
# mark what it could not see, and never invent an exchange.
# Golden: the client's own log (match "subset", see testdata/README.md).
source "$(dirname "$0")/../lib.sh"
python3 "$PEERS/http1.py" server > "$WORK/server.txt" &
SERVER=$!
PORT=$(wait_port "$WORK/server.txt")
start_capture --pid "$SERVER" --ring-buffer-size 4096 --max-payload 16384
python3 "$PEERS/http1.py" client --port "$PORT" --log "$WORK/client" --repeat 15 \
  "GET /bytes/40000" "GET /" "POST /echo 300" "GET /chunked/20000" > /dev/null
stop_capture
write_expected subset "$WORK/client/exchanges.json"
