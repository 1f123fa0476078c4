"""SQL storage of nudaq (SQLAlchemy 2): models, engine/session helpers, Alembic migrations."""
