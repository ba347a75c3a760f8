"""honeychat bot (the aiogram polling bot's stand-in)."""

import ticker

ticker.run("bot")
