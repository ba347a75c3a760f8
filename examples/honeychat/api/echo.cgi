#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "honeychat-api $(cat /VERSION) $(hostname)"
[ "${CONTENT_LENGTH:-0}" -gt 0 ] && head -c "$CONTENT_LENGTH"
exit 0
