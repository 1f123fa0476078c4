"""Web monitoring and shifter control: the FastAPI app (app.py) and its routes (routes/),
API documents (models.py), authentication (auth.py), live status (status.py), SQL reads
(queries.py), the server process (server.py)."""
