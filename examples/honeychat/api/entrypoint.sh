#!/bin/sh
set -e
line="honeychat-api $(cat /VERSION) $(hostname)"
echo "$line" > /www/version
printf '<!doctype html><title>honeychat</title><p>%s</p>\n' "$line" > /www/index.html
echo "$line listening on :8000"
# httpd as PID 1 would ignore SIGTERM (no handler installed), so keep sh as PID 1 and forward it.
httpd -f -p 8000 -h /www &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid || true; exit 0' TERM INT
wait $pid
