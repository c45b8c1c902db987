"""The HTTP API: FastAPI app (`api.app.create_app`), routes, auth, middleware and errors (CONTRACT §4)."""
