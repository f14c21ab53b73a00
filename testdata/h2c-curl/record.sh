#!/usr/bin/env bash
# h2c with prior knowledge: curl --http2-prior-knowledge against hypercorn (the
# target), one request per connection (curl 7.88 cannot reuse an h2c prior
# knowledge connection for a second transfer). Golden: curl's own report (-w).
source "$(dirname "$0")/../lib.sh"
PORT=$(free_port)
start_hypercorn "$PORT"
head -c 3000 /dev/urandom > "$WORK/upload"
start_capture --pid "$SERVER" --max-payload 65536
URL=http://127.0.0.1:$PORT
W='%{method} %{url_effective} %{http_code} %{size_download} %{size_upload}\n'
{
  curl -s --http2-prior-knowledge -o /dev/null -w "$W" "$URL/"
  curl -s --http2-prior-knowledge -o /dev/null -w "$W" "$URL/bytes/30000"
  curl -s --http2-prior-knowledge -o /dev/null -w "$W" --data-binary "@$WORK/upload" "$URL/echo"
  curl -s --http2-prior-knowledge -o /dev/null -w "$W" "$URL/status/404"
  curl -s --http2-prior-knowledge -o /dev/null -w "$W" "$URL/status/503"
} > "$WORK/curl.txt"
stop_capture
curl_log "$WORK/curl.txt" > "$WORK/exchanges.json"
write_expected exact "$WORK/exchanges.json"
