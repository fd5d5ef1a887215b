"""What every dashboard page shares: the session, CSRF, templates, the API client."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from kumo.console.origin import host_only
from kumo.dashboard.client import ApiError, Cloud
from kumo.dashboard.session import COOKIE, MAX_AGE, DashSession, SessionCodec

Handler = Callable[[Request], Awaitable[Response]]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}


class Dashboard:
    """State of the dashboard app: templates, cookie codec, the way to the APIs."""

    def __init__(self, codec: SessionCodec, transport: httpx.AsyncBaseTransport,
                 work_dir: Path, secure_cookie: bool) -> None:
        self.codec = codec
        self.transport = transport
        self.work_dir = work_dir
        self.secure_cookie = secure_cookie
        folder = Path(str(resources.files("kumo.dashboard") / "templates"))
        self.templates = Environment(loader=FileSystemLoader(folder),
                                     autoescape=select_autoescape(["html"]))
        self.lint_results: dict[str, list[dict[str, str]]] = {}


def dashboard_of(request: Request) -> Dashboard:
    found = request.app.state.dashboard
    assert isinstance(found, Dashboard)
    return found


def session_of(request: Request) -> DashSession:
    """The request's session (a fresh anonymous one when the cookie is missing or bad)."""
    cached = request.scope.get("kumo.session")
    if isinstance(cached, DashSession):
        return cached
    session = dashboard_of(request).codec.loads(request.cookies.get(COOKIE)) or DashSession()
    request.scope["kumo.session"] = session
    return session


def cloud_of(request: Request) -> Cloud:
    return Cloud(dashboard_of(request).transport, session_of(request).token)


def save_session(request: Request, response: Response, session: DashSession) -> Response:
    dash = dashboard_of(request)
    response.set_cookie(COOKIE, dash.codec.dumps(session), max_age=MAX_AGE, path="/",
                        httponly=True, samesite="lax", secure=dash.secure_cookie)
    return response


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    session = session_of(request)
    flash, session.flash = session.flash, ""
    page = dashboard_of(request).templates.get_template(template).render(
        request=request, session=session, flash=flash, csrf=session.csrf, **context)
    response = HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
    return save_session(request, response, session)


def redirect(request: Request, url: str, flash: str = "") -> Response:
    """303 to `url` (or an HX-Redirect for htmx requests), keeping a message for it."""
    session = session_of(request)
    if flash:
        session.flash = flash
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    return save_session(request, response, session)


def same_origin(request: Request) -> bool:
    """A browser's Origin (or Referer) names this host, when it sends one."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return (urlsplit(origin).hostname or "").lower() == host_only(
        request.headers.get("host", "")).lower()


async def check_csrf(request: Request, *, form: Any = None) -> bool:
    session = session_of(request)
    presented = request.headers.get("x-csrf-token")
    if presented is None and form is not None:
        value = form.get("csrf_token")
        presented = value if isinstance(value, str) else None
    return same_origin(request) and session.csrf_ok(presented)


def page(login: bool = True) -> Callable[[Handler], Handler]:
    """Decorate a view: login required (unless `login=False`), CSRF on unsafe methods,
    API errors shown as a message instead of a crash."""

    def wrap(view: Handler) -> Handler:
        @functools.wraps(view)
        async def run(request: Request) -> Response:
            session = session_of(request)
            if login and not session.logged_in:
                if request.method in SAFE_METHODS:
                    return redirect(request, "/login")
                return Response("log in first", status_code=401)
            if request.method not in SAFE_METHODS:
                form = None
                if "x-csrf-token" not in request.headers:
                    form = await request.form()
                    request.scope["kumo.form"] = form
                if not await check_csrf(request, form=form):
                    return Response("CSRF check failed: reload the page and try again",
                                    status_code=403)
            try:
                return await view(request)
            except ApiError as exc:
                if exc.status == 401 and login:
                    session.token = None
                    return redirect(request, "/login", "Your session has ended: log in again.")
                if request.headers.get("hx-request") or request.headers.get("x-csrf-token"):
                    return Response(exc.message, status_code=exc.status)
                back = request.headers.get("referer") or "/"
                path = urlsplit(back).path or "/"
                return redirect(request, path, f"Error: {exc.message}")

        return run

    return wrap


async def form_of(request: Request) -> Any:
    """The form the CSRF check already read (a body can be read once)."""
    return request.scope.get("kumo.form") or await request.form()


async def show(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """render() a full page, with the caller's projects for the project switcher."""
    projects: list[dict[str, Any]] = []
    if session_of(request).logged_in:
        try:
            projects = (await cloud_of(request).get("/identity/v3/auth/projects"))["projects"]
        except ApiError:
            projects = []
    return render(request, template, status, projects=projects, **context)
