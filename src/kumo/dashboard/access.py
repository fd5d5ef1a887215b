"""Key pairs and security groups (with their rules)."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kumo.dashboard.web import cloud_of, form_of, page, redirect, show

KEYPAIRS = "/compute/v2.1/os-keypairs"
GROUPS = "/network/v2.0/security-groups"
RULES = "/network/v2.0/security-group-rules"


@page()
async def list_keypairs(request: Request) -> Response:
    found = [k["keypair"] for k in (await cloud_of(request).get(KEYPAIRS))["keypairs"]]
    return await show(request, "keypairs.html", keypairs=found)


@page()
async def create_keypair(request: Request) -> Response:
    """Nova makes the key; its private half is sent to the browser once, as a download,
    and kept nowhere (kumo stores only the public key)."""
    form = await form_of(request)
    name = str(form.get("name", "")).strip()
    made = await cloud_of(request).request(
        "POST", KEYPAIRS, json={"keypair": {"name": name}},
        headers={"OpenStack-API-Version": "compute 2.91"})
    private = made.json()["keypair"]["private_key"]
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".pem"
    return Response(private, media_type="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


@page()
async def import_keypair(request: Request) -> Response:
    form = await form_of(request)
    name = str(form.get("name", "")).strip()
    public_key = str(form.get("public_key", "")).strip()
    upload = form.get("public_key_file")
    if not public_key and upload is not None and hasattr(upload, "read"):
        public_key = (await upload.read(64 * 1024)).decode(errors="replace").strip()
    await cloud_of(request).post(KEYPAIRS, {"keypair": {"name": name, "public_key": public_key}})
    return redirect(request, "/keypairs", f"Key pair {name} imported.")


@page()
async def delete_keypair(request: Request) -> Response:
    name = request.path_params["name"]
    await cloud_of(request).delete(f"{KEYPAIRS}/{name}")
    return redirect(request, "/keypairs", f"Key pair {name} deleted.")


@page()
async def list_groups(request: Request) -> Response:
    groups = (await cloud_of(request).get(GROUPS))["security_groups"]
    return await show(request, "secgroups.html", groups=groups)


@page()
async def create_group(request: Request) -> Response:
    form = await form_of(request)
    body = {"security_group": {"name": str(form.get("name", "")).strip(),
                               "description": str(form.get("description", ""))}}
    made = await cloud_of(request).post(GROUPS, body)
    group_id = made["security_group"]["id"]
    return redirect(request, f"/security-groups/{group_id}", "Security group created.")


@page()
async def show_group(request: Request) -> Response:
    group_id = request.path_params["id"]
    group = (await cloud_of(request).get(f"{GROUPS}/{group_id}"))["security_group"]
    return await show(request, "secgroup.html", group=group)


@page()
async def delete_group(request: Request) -> Response:
    await cloud_of(request).delete(f"{GROUPS}/{request.path_params['id']}")
    return redirect(request, "/security-groups", "Security group deleted.")


@page()
async def add_rule(request: Request) -> Response:
    group_id = request.path_params["id"]
    form = await form_of(request)
    rule: dict[str, Any] = {"security_group_id": group_id,
                            "direction": str(form.get("direction", "ingress")),
                            "ethertype": str(form.get("ethertype", "IPv4"))}
    protocol = str(form.get("protocol", "")).strip()
    if protocol and protocol != "any":
        rule["protocol"] = protocol
    for field, key in (("port_min", "port_range_min"), ("port_max", "port_range_max")):
        value = str(form.get(field, "")).strip()
        if value:
            if not value.isdigit():
                return redirect(request, f"/security-groups/{group_id}",
                                f"Error: {field.replace('_', ' ')} must be a port number")
            rule[key] = int(value)
    if "port_range_min" in rule and "port_range_max" not in rule:
        rule["port_range_max"] = rule["port_range_min"]
    prefix = str(form.get("remote_ip_prefix", "")).strip()
    if prefix:
        rule["remote_ip_prefix"] = prefix
    await cloud_of(request).post(RULES, {"security_group_rule": rule})
    return redirect(request, f"/security-groups/{group_id}", "Rule added.")


@page()
async def delete_rule(request: Request) -> Response:
    group_id = request.path_params["id"]
    await cloud_of(request).delete(f"{RULES}/{request.path_params['rule_id']}")
    return redirect(request, f"/security-groups/{group_id}", "Rule deleted.")
