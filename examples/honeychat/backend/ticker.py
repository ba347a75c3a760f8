"""The loop shared by the bot, the beat and the workers: log a tick every TICK_SECS
seconds until SIGTERM (or SIGINT), then exit 0 at once."""

import os
import signal
import socket
import time


def _stop(signum, frame):
    # Raised wherever the main thread is, usually in time.sleep(), so the exit is immediate.
    raise SystemExit(0)


def run(name):
    version = open("/app/VERSION").read().strip()
    line = f"honeychat-{name} {version} {socket.gethostname()}"
    every = float(os.environ.get("TICK_SECS", "3"))
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while True:
            print(f"{line} tick", flush=True)
            # The healthcheck's proof of life: the loop is still turning.
            with open("/tmp/heartbeat", "w") as beat:
                beat.write(f"{time.time()}\n")
            time.sleep(every)
    finally:
        print(f"{line} stopping", flush=True)
