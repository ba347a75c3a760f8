#!/bin/sh
set -e
line="honeychat-api $(cat /VERSION) $(hostname)"
echo "$line" > /www/version
printf '<!doctype html><title>honeychat</title><p>%s</p>\n' "$line" > /www/index.html
echo "$line listening on :8000"
# httpd as PID 1 would ignore SIGTERM (no handler installed), so keep sh as PID 1 and forward it.
# A graceful stop, as an API server does it: the listener exits first, so new connections are
# refused, and the forked children finish the requests in flight (bounded by the stop timeout).
httpd -f -p 8000 -h /www &
pid=$!
drain() {
  kill -TERM $pid 2>/dev/null
  wait $pid || true
  while [ -n "$(pidof httpd)" ]; do sleep 0.1; done
  exit 0
}
trap drain TERM INT
wait $pid
