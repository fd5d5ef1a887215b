"""Quotas: nova's per-project limits, what is in use, and the checks that enforce them.

Limits are the `[quota]` defaults unless an admin set a project's (or one user's in
it) own with `PUT /os-quota-sets/{project_id}`; -1 means unlimited. Usage is
counted from the records (nova's "counting quotas"): servers not deleted,
their vCPUs and RAM, the user's key pairs, the project's server groups.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.microversion import Version
from kumo.compute.models import DELETED, KeyPair, QuotaLimit, Server, ServerGroup
from kumo.config import QuotaSettings
from kumo.errors import BadRequest, Forbidden

# API name -> [quota] option (nova renamed injected_file_path_bytes in its config only)
RESOURCES: dict[str, str] = {
    "instances": "instances", "cores": "cores", "ram": "ram",
    "metadata_items": "metadata_items", "key_pairs": "key_pairs",
    "server_groups": "server_groups", "server_group_members": "server_group_members",
    "injected_files": "injected_files",
    "injected_file_content_bytes": "injected_file_content_bytes",
    "injected_file_path_bytes": "injected_file_path_length",
}
# Neutron owns these; nova < 2.36 still shows its old defaults for them.
NETWORK_DEFAULTS = {"floating_ips": 10, "fixed_ips": -1, "security_groups": 10,
                    "security_group_rules": 20}
_INJECTED = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")


class OverQuota(Forbidden):
    """nova's QuotaExceeded: 403 with what was asked, used and allowed."""


def resources_at(version: Version) -> list[str]:
    """The quota names the API shows at `version` (2.36 drops network, 2.57 injected files)."""
    names = list(RESOURCES)
    if version >= (2, 57):
        names = [n for n in names if n not in _INJECTED]
    if version < (2, 36):
        names += list(NETWORK_DEFAULTS)
    return names


def defaults(settings: QuotaSettings) -> dict[str, int]:
    values = {f.name: int(getattr(settings, f.name)) for f in fields(settings)}
    shown = {name: values[option] for name, option in RESOURCES.items()}
    return {**shown, **NETWORK_DEFAULTS}


def limits(session: Session, settings: QuotaSettings, project_id: str,
           user_id: str | None = None) -> dict[str, int]:
    """The limits in force for a project (and, when given, one user in it)."""
    result = defaults(settings)
    rows = session.scalars(select(QuotaLimit).where(QuotaLimit.project_id == project_id))
    project_rows = {r.resource: r.hard_limit for r in rows if r.user_id == ""}
    result.update(project_rows)
    if user_id:
        user_rows = session.scalars(select(QuotaLimit).where(
            QuotaLimit.project_id == project_id, QuotaLimit.user_id == user_id))
        result.update({r.resource: r.hard_limit for r in user_rows})
    return result


def usage(session: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """What a project (or one user in it) uses now, for the countable resources."""
    servers = select(func.count(), func.coalesce(func.sum(Server.vcpus), 0),
                     func.coalesce(func.sum(Server.memory_mb), 0)).where(
        Server.project_id == project_id, Server.vm_state != DELETED)
    if user_id:
        servers = servers.where(Server.user_id == user_id)
    count, cores, ram = session.execute(servers).one()
    groups = select(func.count()).select_from(ServerGroup).where(
        ServerGroup.project_id == project_id)
    if user_id:
        groups = groups.where(ServerGroup.user_id == user_id)
    used = {name: 0 for name in [*RESOURCES, *NETWORK_DEFAULTS]}
    used.update(instances=int(count), cores=int(cores), ram=int(ram),
                server_groups=int(session.scalar(groups) or 0))
    if user_id:
        used["key_pairs"] = int(session.scalar(select(func.count()).select_from(KeyPair).where(
            KeyPair.user_id == user_id)) or 0)
    return used


def check_servers(session: Session, settings: QuotaSettings, context: RequestContext,
                  min_count: int, max_count: int, vcpus: int, ram: int) -> int:
    """How many new servers to make: max_count if they fit, else as many as fit but at
    least min_count (nova's rule); OverQuota naming the first short resource otherwise."""
    allowed = limits(session, settings, context.project_id, context.user_id)
    used = usage(session, context.project_id)
    fits = max_count
    for name, each in (("instances", 1), ("cores", vcpus), ("ram", ram)):
        if allowed[name] >= 0 and each > 0:
            fits = min(fits, (allowed[name] - used[name]) // each)
            if fits < min_count:
                raise OverQuota(
                    f"Quota exceeded for {name}: Requested {each * min_count}, but already "
                    f"used {used[name]} of {allowed[name]} {name}")
    return fits


def check_resize(session: Session, settings: QuotaSettings, context: RequestContext,
                 extra_vcpus: int, extra_ram: int) -> None:
    """A resize up must fit the cores and RAM quotas."""
    allowed = limits(session, settings, context.project_id, context.user_id)
    used = usage(session, context.project_id)
    for name, extra in (("cores", extra_vcpus), ("ram", extra_ram)):
        if extra > 0 and allowed[name] >= 0 and used[name] + extra > allowed[name]:
            raise OverQuota(f"Quota exceeded for {name}: Requested {extra}, but already used "
                            f"{used[name]} of {allowed[name]} {name}")


def check_keypairs(session: Session, settings: QuotaSettings, context: RequestContext,
                   owner: str) -> None:
    allowed = limits(session, settings, context.project_id, owner)["key_pairs"]
    used = session.scalar(select(func.count()).select_from(KeyPair).where(
        KeyPair.user_id == owner)) or 0
    if allowed >= 0 and used >= allowed:
        raise OverQuota("Quota exceeded, too many key pairs.")


def check_metadata(session: Session, settings: QuotaSettings, project_id: str,
                   items: int) -> None:
    allowed = limits(session, settings, project_id)["metadata_items"]
    if allowed >= 0 and items > allowed:
        raise OverQuota(f"Quota exceeded for metadata_items: at most {allowed} metadata "
                        f"items, {items} given")


def check_server_groups(session: Session, settings: QuotaSettings,
                        context: RequestContext) -> None:
    allowed = limits(session, settings, context.project_id, context.user_id)["server_groups"]
    used = usage(session, context.project_id)["server_groups"]
    if allowed >= 0 and used >= allowed:
        raise OverQuota("Quota exceeded, too many server groups.")


def check_group_members(session: Session, settings: QuotaSettings, project_id: str,
                        members: int) -> None:
    allowed = limits(session, settings, project_id)["server_group_members"]
    if allowed >= 0 and members > allowed:
        raise OverQuota("Quota exceeded, too many servers in group")


# -- os-quota-sets -------------------------------------------------------------

def quota_set(session: Session, settings: QuotaSettings, context: RequestContext,
              project_id: str, user_id: str | None, version: Version, *,
              detail: bool = False, default: bool = False) -> dict[str, Any]:
    """GET /os-quota-sets/{project_id}[/detail|/defaults]."""
    if project_id != context.project_id:
        context.require_admin()
    values = defaults(settings) if default else limits(session, settings, project_id, user_id)
    names = resources_at(version)
    if not detail:
        return {"id": project_id, **{n: values[n] for n in names}}
    used = usage(session, project_id, user_id)
    return {"id": project_id, **{n: {"limit": values[n], "in_use": used[n], "reserved": 0}
                                 for n in names}}


def update_quota_set(session: Session, settings: QuotaSettings, context: RequestContext,
                     project_id: str, user_id: str | None, body: Any,
                     version: Version) -> dict[str, Any]:
    """PUT /os-quota-sets/{project_id} (admin): new limits, checked against usage."""
    context.require_admin()
    spec = body.get("quota_set") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'quota_set' is a required property")
    force = spec.get("force", False)
    if not isinstance(force, bool) and str(force).lower() not in ("true", "false"):
        raise BadRequest("Invalid input for field/attribute force")
    force = force is True or str(force).lower() == "true"
    names = set(resources_at(version))
    wanted: dict[str, int] = {}
    for key, value in spec.items():
        if key == "force":
            continue
        if key not in names:
            raise BadRequest(f"Additional properties are not allowed ('{key}' was unexpected)")
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < -1 or number > 2**31 - 1 or (
                isinstance(value, float) and value != number):
            raise BadRequest(f"Invalid input for field/attribute {key}. Value: {value}. "
                             f"{value!r} is not a valid quota value (-1 or more)")
        wanted[key] = number
    used = usage(session, project_id, user_id)
    for key, number in wanted.items():
        if not force and number != -1 and used.get(key, 0) > number:
            raise BadRequest(f"Quota limit {number} for {key} must be greater than or equal "
                             f"to already used and reserved {used[key]}.")
    for key, number in wanted.items():
        if key in NETWORK_DEFAULTS:
            continue  # Neutron's: accepted and shown unchanged, as nova with Neutron does
        row = session.scalar(select(QuotaLimit).where(
            QuotaLimit.project_id == project_id, QuotaLimit.user_id == (user_id or ""),
            QuotaLimit.resource == key))
        if row is None:
            session.add(QuotaLimit(project_id=project_id, user_id=user_id or "",
                                   resource=key, hard_limit=number))
        else:
            row.hard_limit = number
    session.flush()
    values = limits(session, settings, project_id, user_id)
    return {n: values[n] for n in resources_at(version)}


def delete_quota_set(session: Session, context: RequestContext, project_id: str,
                     user_id: str | None) -> None:
    """DELETE /os-quota-sets/{project_id} (admin): back to the defaults."""
    context.require_admin()
    stmt = delete(QuotaLimit).where(QuotaLimit.project_id == project_id)
    if user_id:
        stmt = stmt.where(QuotaLimit.user_id == user_id)
    session.execute(stmt)


# -- GET /limits ---------------------------------------------------------------

def absolute_limits(session: Session, settings: QuotaSettings, project_id: str,
                    version: Version) -> dict[str, int]:
    """The `absolute` part of GET /limits, the fields gated by microversion as nova's."""
    allowed = limits(session, settings, project_id)
    used = usage(session, project_id)
    body = {
        "maxServerMeta": allowed["metadata_items"], "maxTotalKeypairs": allowed["key_pairs"],
        "maxTotalCores": allowed["cores"], "maxTotalInstances": allowed["instances"],
        "maxTotalRAMSize": allowed["ram"], "maxServerGroups": allowed["server_groups"],
        "maxServerGroupMembers": allowed["server_group_members"],
        "totalCoresUsed": used["cores"], "totalInstancesUsed": used["instances"],
        "totalRAMUsed": used["ram"], "totalServerGroupsUsed": used["server_groups"],
    }
    if version < (2, 39):
        body["maxImageMeta"] = allowed["metadata_items"]
    if version < (2, 57):
        body["maxPersonality"] = allowed["injected_files"]
        body["maxPersonalitySize"] = allowed["injected_file_content_bytes"]
    if version < (2, 36):
        body.update(maxSecurityGroups=allowed["security_groups"],
                    maxSecurityGroupRules=allowed["security_group_rules"],
                    maxTotalFloatingIps=allowed["floating_ips"],
                    totalFloatingIpsUsed=0, totalSecurityGroupsUsed=0)
    return body
