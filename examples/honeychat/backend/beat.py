"""honeychat celery_beat (the RedBeat scheduler's stand-in)."""

import ticker

ticker.run("celery_beat")
