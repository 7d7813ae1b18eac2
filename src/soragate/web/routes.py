from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from soragate.core.accounts import KIND_DESCRIPTIONS, kind_help

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)

# The pages hold no data of their own: they load the key from the browser session and call
# the API. The CSP keeps every request on this origin (the server may have no internet).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {"title": title, **context})
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/", response_class=HTMLResponse)
async def studio(request: Request) -> HTMLResponse:
    return _page(request, "studio.html", "soragate studio")


@router.get("/admin", response_class=HTMLResponse)
async def console(request: Request) -> HTMLResponse:
    kinds = [{"kind": kind, "what": what, "help": kind_help(kind)} for kind, what in KIND_DESCRIPTIONS.items()]
    return _page(request, "admin.html", "soragate admin", kinds=kinds)
