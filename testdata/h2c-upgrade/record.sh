#!/usr/bin/env bash
# h2c by upgrade: curl --http2 asks with "Upgrade: h2c"; hypercorn (the
# target) answers 101 and the response comes on HTTP/2 stream 1.
# Golden: curl's own report (-w).
source "$(dirname "$0")/../lib.sh"
PORT=$(free_port)
start_hypercorn "$PORT"
start_capture --pid "$SERVER" --max-payload 65536
URL=http://127.0.0.1:$PORT
W='%{method} %{url_effective} %{http_code} %{size_download} %{size_upload}\n'
{
  curl -s --http2 -o /dev/null -w "$W" "$URL/bytes/2000"
  curl -s --http2 -o /dev/null -w "$W" "$URL/status/404"
} > "$WORK/curl.txt"
stop_capture
curl_log "$WORK/curl.txt" > "$WORK/exchanges.json"
write_expected exact "$WORK/exchanges.json"
