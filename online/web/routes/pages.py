"""The HTML pages (Jinja2 templates, one per entry of ``PAGES``) and the offline /docs page."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from daq.core.records import CATEGORY_NAMES
from online.web.deps import ConfigDep, TemplatesDep

PAGES = {
    "overview": ("/", "Overview"),
    "spectra": ("/spectra", "Spectra"),
    "trends": ("/trends", "Trends"),
    "alarms": ("/alarms", "Alarms"),
    "quality": ("/quality", "Run quality"),
    "logbook": ("/logbook", "Logbook"),
    "control": ("/control", "Run control"),
}
"""Page name -> (path, title in the navigation bar); the template is ``<name>.html``."""

router = APIRouter()


def page(name: str) -> Callable[..., HTMLResponse]:
    """The endpoint that renders the template of page ``name``."""

    def render(request: Request, config: ConfigDep, templates: TemplatesDep) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            f"{name}.html",
            {
                "page": name,
                "pages": PAGES,
                "categories": list(CATEGORY_NAMES.values()),
                "xray_lines": [line.energy_keV for line in config.sim.xray_lines],
                "window_keV": config.analysis.window_keV,
            },
        )

    return render


for _name, (_path, _title) in PAGES.items():
    router.get(_path, response_class=HTMLResponse, include_in_schema=False, name=_name)(page(_name))


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="nudaq API",
        swagger_js_url="/static/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
