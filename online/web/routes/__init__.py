"""The routes of the web server, one APIRouter per area (included by online.web.app)."""
