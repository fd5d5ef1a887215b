"""Logging in, the session cookie, CSRF and project switching."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.dashboard.conftest import csrf_of, log_in


def test_pages_need_a_login(api: TestClient) -> None:
    response = api.get("/servers", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert api.post("/servers", data={}).status_code in (401, 403)


def test_login_sets_an_httponly_samesite_cookie_without_the_token(api: TestClient) -> None:
    token = csrf_of(api.get("/login").text)
    response = api.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                        "csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    overview = api.get("/")
    assert "Project admin" in overview.text
    keystone = api.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}}}})
    assert keystone.headers["X-Subject-Token"][:20] not in cookie  # encrypted, not readable
    assert "token" not in str(overview.url)


def test_login_needs_csrf_and_right_credentials(api: TestClient) -> None:
    no_csrf = api.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert no_csrf.status_code == 403
    token = csrf_of(api.get("/login").text)
    wrong = api.post("/login", data={"username": "admin", "password": "nope",
                                     "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text


def test_every_form_is_csrf_checked(api: TestClient) -> None:
    log_in(api)
    assert api.post("/keypairs", data={"name": "k"}).status_code == 403
    assert api.post("/keypairs", data={"name": "k", "csrf_token": "forged"}).status_code == 403
    token = csrf_of(api.get("/keypairs").text)
    foreign = api.post("/keypairs", data={"name": "k", "csrf_token": token},
                       headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403


def test_project_switcher(api: TestClient, make_project_user: Callable[..., object],
                          runtime: object) -> None:
    make_project_user("p1", "carol")
    make_project_user("p2", "carol")
    token = log_in(api, "carol", "pw-carol", project="p1")
    page = api.get("/").text
    assert "Project p1" in page and ">p2</option>" in page
    p2 = page.split('<option value="')[1:]
    p2_id = next(option.split('"')[0] for option in p2 if ">p2</option>" in option)
    switched = api.post("/project", data={"project_id": p2_id, "csrf_token": token})
    assert switched.status_code == 200 and "Project p2" in switched.text


def test_logout_revokes_the_session(api: TestClient) -> None:
    token = log_in(api)
    api.post("/logout", data={"csrf_token": token})
    assert api.get("/", follow_redirects=False).status_code == 303
