"""The dashboard over the real API (in process), with compute's fake hypervisor."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.compute.conftest import compute, hypervisor, images
from tests.conftest import ADMIN_PASSWORD

__all__ = ["compute", "hypervisor", "images"]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field in the page"
    return found.group(1)


def log_in(api: TestClient, user: str = "admin", password: str = ADMIN_PASSWORD,
           project: str = "") -> str:
    """Log in through the form; returns the CSRF value of the new session."""
    token = csrf_of(api.get("/login").text)
    response = api.post("/login", data={"username": user, "password": password,
                                        "project": project, "csrf_token": token},
                        follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(api.get("/").text)


@pytest.fixture
def dash(api: TestClient) -> TestClient:
    """`api` logged in as admin (the cookie jar holds the session)."""
    api.headers["origin"] = "http://testserver"
    log_in(api)
    return api
