#!/bin/sh
trap 'echo "honeychat-worker stopping"; exit 0' TERM INT
version=$(cat /VERSION)
while :; do
  echo "honeychat-worker $version $(hostname) tick"
  # sleep in the background so the trap runs as soon as the signal arrives
  sleep 3 & wait $!
done
