"""Log in with Keystone credentials, switch project, log out."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kumo.dashboard.client import ApiError, Cloud
from kumo.dashboard.session import DashSession
from kumo.dashboard.web import (
    cloud_of,
    dashboard_of,
    form_of,
    page,
    redirect,
    render,
    save_session,
    session_of,
)

TOKENS = "/identity/v3/auth/tokens"


def _session_from(data: dict[str, Any], token: str) -> DashSession:
    project = data.get("project") or {}
    user = data.get("user") or {}
    return DashSession(token=token, user_id=user.get("id", ""), user_name=user.get("name", ""),
                       project_id=project.get("id", ""), project_name=project.get("name", ""),
                       roles=[r.get("name", "") for r in data.get("roles", [])],
                       expires_at=data.get("expires_at", ""))


async def _authenticate(request: Request, body: dict[str, Any]) -> Response:
    cloud = Cloud(dashboard_of(request).transport)
    response = await cloud.request("POST", TOKENS, json=body)
    fresh = _session_from(response.json()["token"], response.headers["X-Subject-Token"])
    old = session_of(request)
    if old.token:  # switching project: the old token is of no more use
        with contextlib.suppress(ApiError):
            await cloud.request("DELETE", TOKENS, headers={"X-Auth-Token": old.token,
                                                           "X-Subject-Token": old.token})
    request.scope["kumo.session"] = fresh  # a new CSRF secret with every login
    return redirect(request, "/", f"Logged in as {fresh.user_name}, project "
                                  f"{fresh.project_name}.")


@page(login=False)
async def login_form(request: Request) -> Response:
    return render(request, "login.html", error="", username="", project="")


@page(login=False)
async def login(request: Request) -> Response:
    form = await form_of(request)
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    project = str(form.get("project", "")).strip()
    user: dict[str, Any] = {"name": username, "domain": {"id": "default"}, "password": password}
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"],
                                                  "password": {"user": user}}}}
    if project:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    try:
        return await _authenticate(request, body)
    except ApiError as exc:
        message = ("Wrong user name or password." if exc.status == 401
                   and "authentication" in exc.message else exc.message)
        return render(request, "login.html", status=401 if exc.status == 401 else 400,
                      error=message, username=username, project=project)


@page()
async def switch_project(request: Request) -> Response:
    form = await form_of(request)
    session = session_of(request)
    body = {"auth": {"identity": {"methods": ["token"], "token": {"id": session.token}},
                     "scope": {"project": {"id": str(form.get("project_id", ""))}}}}
    return await _authenticate(request, body)


@page(login=False)
async def logout(request: Request) -> Response:
    session = session_of(request)
    if session.token:
        with contextlib.suppress(ApiError):
            await cloud_of(request).request(
                "DELETE", TOKENS, headers={"X-Subject-Token": session.token})
    request.scope["kumo.session"] = DashSession()
    response = redirect(request, "/login", "Logged out.")
    return save_session(request, response, session_of(request))
