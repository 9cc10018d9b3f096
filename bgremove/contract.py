"""The Background Removal API's contract (background-removal-api.txt), in one place: the client
(backends/remote.py) refuses what the server (server/app.py) would refuse, by the same numbers.

Imported by `bgremove --help` (through the settings): it must stay free of heavy imports.
"""

DEFAULT_API_URL = "https://api.versatool.ai/api/remove-background/"

# Accepted images, by the format their content shows, and the type each is sent as.
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SIDE = 4000
# Requests per key in any RATE_WINDOW seconds.
RATE_LIMIT = 100
RATE_WINDOW = 60.0
