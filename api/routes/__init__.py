"""One router per resource; `api/app.py` mounts them. Every router but health's carries the full
`/api/v1/...` prefix itself, so a route's path template (metrics label) is its real path."""

API_PREFIX = "/api/v1"
