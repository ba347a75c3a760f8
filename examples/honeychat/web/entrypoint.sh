#!/bin/sh
set -e
line="honeychat-web $(cat /VERSION) $(hostname)"
echo "$line" > /www/version
# The page loads its build's chunk through nginx, which serves /web/_next/static/ from
# the asset bridge first (this and the previous builds' chunks).
printf '<!doctype html><title>honeychat web</title><p>%s</p><script src="/web/_next/static/chunks/%s"></script>\n' \
  "$line" "$(cat /CHUNK)" > /www/index.html
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
