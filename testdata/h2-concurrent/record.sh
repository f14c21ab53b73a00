#!/usr/bin/env bash
# Concurrent HTTP/2 streams: nghttp sends 20 distinct requests at once on one h2c
# connection to hypercorn (the target). Golden: nghttp's own per-stream
# report (-s): stream id, status, size, path.
source "$(dirname "$0")/../lib.sh"
PORT=$(free_port)
start_hypercorn "$PORT"
start_capture --pid "$SERVER" --max-payload 65536
URL=http://127.0.0.1:$PORT
urls=()
for i in 1 2 3 4; do
  urls+=("$URL/bytes/$((100 * i))" "$URL/?n=$i" "$URL/status/404?n=$i" "$URL/status/503?n=$i" "$URL/bytes/$((900 + i))")
done
nghttp -ns "${urls[@]}" > "$WORK/nghttp.txt"
stop_capture
python3 - "$WORK/nghttp.txt" > "$WORK/exchanges.json" <<'PY'
import json, sys
out = []
rows = False
for line in open(sys.argv[1]):
    if line.startswith("id "):
        rows = True
        continue
    parts = line.split()
    if rows and len(parts) == 7:
        sid, _, _, _, code, size, path = parts
        out.append({"protocol": "http2", "method": "GET", "path": path, "status": int(code),
                    "stream_id": int(sid), "response_body_size": int(size)})
json.dump(out, sys.stdout)
PY
write_expected exact "$WORK/exchanges.json"
