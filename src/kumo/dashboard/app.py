"""The dashboard's routes and its ASGI app (mounted at `/` by `kumo.api.app`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from kumo.dashboard import access, auth, images, overview, servers
from kumo.dashboard.session import SessionCodec, load_key
from kumo.dashboard.web import Dashboard
from kumo.runtime import Runtime

POST = ["POST"]


def build_app(runtime: Runtime, api: ASGIApp) -> Starlette:
    """The dashboard, talking to `api` (the whole kumo app) in process."""
    settings = runtime.settings
    static = Path(str(resources.files("kumo.dashboard") / "static"))
    routes = [
        Mount("/static", app=StaticFiles(directory=static), name="static"),
        Route("/", overview.overview),
        Route("/login", auth.login_form), Route("/login", auth.login, methods=POST),
        Route("/logout", auth.logout, methods=POST),
        Route("/project", auth.switch_project, methods=POST),
        Route("/images", images.list_images),
        Route("/images", images.create_image, methods=POST),
        Route("/images/{id}", images.show_image),
        Route("/images/{id}/file", images.upload_file, methods=["PUT"]),
        Route("/images/{id}/visibility", images.set_visibility, methods=POST),
        Route("/images/{id}/delete", images.delete_image, methods=POST),
        Route("/servers", servers.list_servers),
        Route("/servers", servers.launch, methods=POST),
        Route("/servers/rows", servers.server_rows),
        Route("/servers/new", servers.launch_form),
        Route("/servers/{id}", servers.show_server),
        Route("/servers/{id}/status", servers.server_status),
        Route("/servers/{id}/log", servers.console_log),
        Route("/servers/{id}/console/{kind}", servers.open_console, methods=POST),
        Route("/servers/{id}/{action}", servers.server_action, methods=POST),
        Route("/keypairs", access.list_keypairs),
        Route("/keypairs", access.create_keypair, methods=POST),
        Route("/keypairs/import", access.import_keypair, methods=POST),
        Route("/keypairs/{name}/delete", access.delete_keypair, methods=POST),
        Route("/security-groups", access.list_groups),
        Route("/security-groups", access.create_group, methods=POST),
        Route("/security-groups/{id}", access.show_group),
        Route("/security-groups/{id}/delete", access.delete_group, methods=POST),
        Route("/security-groups/{id}/rules", access.add_rule, methods=POST),
        Route("/security-groups/{id}/rules/{rule_id}/delete", access.delete_rule, methods=POST),
        Route("/networks", overview.networks),
    ]
    app = Starlette(routes=routes)
    codec = SessionCodec(load_key(settings.data_dir / "dashboard.key"))
    app.state.dashboard = Dashboard(
        codec, httpx.ASGITransport(app=api), settings.run_dir / "dashboard",
        secure_cookie=settings.base_url.startswith("https://"))
    return app
