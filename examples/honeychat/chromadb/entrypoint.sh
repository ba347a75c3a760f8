#!/bin/sh
set -e
state=/chroma/chroma
[ -s "$state/store-id" ] || cat /proc/sys/kernel/random/uuid > "$state/store-id"
starts=$(( $(cat "$state/starts" 2>/dev/null || echo 0) + 1 ))
echo "$starts" > "$state/starts"
printf '{"nanosecond heartbeat": %s}\n' "$(date +%s)000000000" > /www/api/v1/heartbeat
echo "chromadb stand-in: store $(cat "$state/store-id"), start $starts, listening on :8000"
# sh stays PID 1 so SIGTERM (ignored by httpd as PID 1) stops the server.
httpd -f -p 8000 -h /www &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid || true; exit 0' TERM INT
wait $pid
