"""serd web: the analysis page and the HTTP API. Needs the [web] extra (aiohttp); the daemon never imports it."""
