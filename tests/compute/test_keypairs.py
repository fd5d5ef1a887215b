"""Key pairs over the Nova API: generate, import (validated), per user, microversions."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

K = "/compute/v2.1/os-keypairs"
PUBLIC = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFSmXtvM0KXYKiGz9kGL9t9lfwBtazjmG9aKfvOjEMa1 "
          "me@laptop")


def test_generate_returns_private_key_once(api: TestClient, admin_headers: dict[str, str]) -> None:
    made = api.post(K, json={"keypair": {"name": "gen"}}, headers=admin_headers)
    assert made.status_code == 200  # 2.1 answers 200; 2.2+ 201
    key = made.json()["keypair"]
    private = serialization.load_ssh_private_key(key["private_key"].encode(), None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    assert key["public_key"].startswith(public)
    shown = api.get(f"{K}/gen", headers=admin_headers).json()["keypair"]
    assert "private_key" not in shown and shown["fingerprint"] == key["fingerprint"]


def test_import_validates_and_refuses_duplicates(api: TestClient,
                                                  admin_headers: dict[str, str]) -> None:
    headers = {**admin_headers, "OpenStack-API-Version": "compute 2.92"}
    ok = api.post(K, json={"keypair": {"name": "mine", "public_key": PUBLIC}}, headers=headers)
    assert ok.status_code == 201 and ok.json()["keypair"]["type"] == "ssh"
    assert len(ok.json()["keypair"]["fingerprint"].split(":")) == 16
    dup = api.post(K, json={"keypair": {"name": "mine", "public_key": PUBLIC}}, headers=headers)
    assert dup.status_code == 409
    bad = api.post(K, json={"keypair": {"name": "bad", "public_key": "ssh-rsa AAAAnope"}},
                   headers=headers)
    assert bad.status_code == 400 and "badRequest" in bad.json()
    no_key = api.post(K, json={"keypair": {"name": "gen"}}, headers=headers)
    assert no_key.status_code == 400  # 2.92 removed server-side generation
    assert api.delete(f"{K}/mine", headers=headers).status_code == 204
    assert api.get(f"{K}/mine", headers=headers).status_code == 404


def test_keypairs_are_per_user(api: TestClient, make_project_user: Any) -> None:
    alice = make_project_user("p1", "alice")
    bob = make_project_user("p1", "bob")
    api.post(K, json={"keypair": {"name": "a", "public_key": PUBLIC}}, headers=alice)
    assert api.get(K, headers=bob).json()["keypairs"] == []
    assert api.get(f"{K}/a", headers=bob).status_code == 404
    listed = api.get(K, headers=alice).json()["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["a"]
