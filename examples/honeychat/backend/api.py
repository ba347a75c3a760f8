"""honeychat api (the FastAPI stand-in): a threaded HTTP server on :8000.

  GET  /version       -> 200 "honeychat-api <VERSION> <hostname>\n"
  POST /cgi-bin/echo  -> 200 that line, then the request body
  GET  /health        -> 200 "ok\n" (the healthcheck)
  GET  /              -> 200 a small HTML page with the version

It connects to nothing at start, so it serves even while postgres is still starting.
On SIGTERM it stops accepting, lets the requests in flight finish, and exits 0.
"""

import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open("/app/VERSION").read().strip()
LINE = f"honeychat-api {VERSION} {socket.gethostname()}\n"


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection (nginx speaks 1.0 to upstreams by default), so no
    # idle keep-alive connection holds up a graceful stop.
    protocol_version = "HTTP/1.0"
    # A client that stalls mid-request cannot hold up a graceful stop for longer than this.
    timeout = 10

    def reply(self, body, content_type="text/plain; charset=utf-8"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/version":
            self.reply(LINE)
        elif self.path == "/health":
            self.reply("ok\n")
        elif self.path == "/":
            page = f"<!doctype html><title>honeychat</title><p>{LINE.strip()}</p>\n"
            self.reply(page, "text/html; charset=utf-8")
        else:
            self.send_error(404)

    def do_POST(self):
        if self.path != "/cgi-bin/echo":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(LINE.encode() + body)

    def log_message(self, fmt, *args):
        if not self.path.startswith("/health"):  # the healthcheck runs every second
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


class Server(ThreadingHTTPServer):
    # Non-daemon request threads: server_close() joins them, which is what lets the requests
    # in flight finish before the process exits.
    daemon_threads = False


def main():
    server = Server(("0.0.0.0", 8000), Handler)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, and that loop runs in this (the main)
        # thread, so ask from another thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{LINE.strip()} listening on :8000", flush=True)
    server.serve_forever()
    # Close the listener first (new connections are refused, so a load balancer moves on),
    # then wait for the request threads.
    server.server_close()
    print(f"{LINE.strip()} stopped", flush=True)


if __name__ == "__main__":
    main()
