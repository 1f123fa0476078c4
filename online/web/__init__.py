"""Web monitoring and shifter control: FastAPI app (app.py), API documents (models.py),
authentication (auth.py), live status (live.py), SQL reads (queries.py), server (server.py)."""
