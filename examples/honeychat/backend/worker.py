"""honeychat workers: `worker.py <name>` runs the worker of that name (celery_worker,
gen_worker, lora_worker, cleanup_worker, retention_email_worker)."""

import sys

import ticker

if len(sys.argv) != 2:
    sys.exit("usage: worker.py NAME")
ticker.run(sys.argv[1])
