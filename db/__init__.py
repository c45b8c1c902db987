"""Database access: tables (`db.models`), the engine (`db.engine`) and repositories (`db.repositories`)."""
