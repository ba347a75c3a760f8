#!/bin/sh
set -e
line="honeychat-web $(cat /VERSION) $(hostname)"
echo "$line" > /www/version
printf '<!doctype html><title>honeychat web</title><p>%s</p>\n' "$line" > /www/index.html
echo "$line listening on :3000"
# httpd as PID 1 would ignore SIGTERM (no handler installed), so sh stays PID 1 and forwards
# it: the listener exits first (new connections are refused), the forked children finish
# the requests in flight.
httpd -f -p 3000 -h /www &
pid=$!
drain() {
  kill -TERM $pid 2>/dev/null
  wait $pid || true
  while [ -n "$(pidof httpd)" ]; do sleep 0.1; done
  exit 0
}
trap drain TERM INT
wait $pid
