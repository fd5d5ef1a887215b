"""Security groups and rules (Neutron's model), and the host forwards they imply.

Guests sit behind QEMU user networking: the only way in is a host port on
127.0.0.1 forwarded to a guest port. An ingress TCP/UDP rule whose source
includes 127.0.0.1 (no prefix, 0.0.0.0/0, 127.0.0.0/8, ...) becomes forwards for
the guest ports in its range, at most MAX_FORWARDS per server. ICMP rules are
stored and listed, but user networking cannot forward ICMP. Rules that name a
remote group allow traffic from other guests, which user networking isolates
anyway, so they forward nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.models import Server
from kumo.errors import BadRequest, Conflict
from kumo.hypervisor.driver import PortForward
from kumo.network.errors import conflict, not_found
from kumo.network.models import PortSecurityGroup, SecurityGroup, SecurityGroupRule

MAX_FORWARDS = 32
# Inside a wide range, the ports people reach first.
_PREFERRED_PORTS = (22, 80, 443, 8080)
_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp"}
_PROTOCOLS = {"tcp", "udp", "icmp", "ipv6-icmp", "any"}
_LOCALHOST = ipaddress.ip_address("127.0.0.1")


def ensure_default(session: Session, project_id: str) -> SecurityGroup:
    """The project's `default` group, created on first use with Neutron's default rules."""
    group = session.scalar(
        select(SecurityGroup).where(
            SecurityGroup.project_id == project_id, SecurityGroup.name == "default"
        )
    )
    if group is not None:
        return group
    group = SecurityGroup(name="default", description="Default security group",
                          project_id=project_id)
    session.add(group)
    session.flush()
    for ethertype in ("IPv4", "IPv6"):
        session.add(SecurityGroupRule(security_group_id=group.id, project_id=project_id,
                                      direction="egress", ethertype=ethertype))
        session.add(SecurityGroupRule(security_group_id=group.id, project_id=project_id,
                                      direction="ingress", ethertype=ethertype,
                                      remote_group_id=group.id))
    session.flush()
    return group


def visible(context: RequestContext, project_id: str) -> bool:
    return context.is_admin or project_id == context.project_id


def list_groups(
    session: Session, context: RequestContext, filters: dict[str, str]
) -> list[SecurityGroup]:
    """Groups the caller may see (admins: all), with Neutron's exact-match filters."""
    ensure_default(session, context.project_id)
    stmt = _visible_matching(SecurityGroup, context, filters, ("id", "name", "description"))
    return list(session.scalars(stmt.order_by(SecurityGroup.created_at, SecurityGroup.name)))


def _visible_matching(
    model: type[SecurityGroup] | type[SecurityGroupRule],
    context: RequestContext,
    filters: dict[str, str],
    keys: tuple[str, ...],
) -> Select[Any]:
    """Rows of `model` the caller may see (admins: all), with Neutron's exact-match filters."""
    stmt: Select[Any] = select(model)
    if not context.is_admin:
        stmt = stmt.where(model.project_id == context.project_id)
    for key in keys:
        if key in filters:
            stmt = stmt.where(getattr(model, key) == filters[key])
    project = filters.get("project_id") or filters.get("tenant_id")
    if project:
        stmt = stmt.where(model.project_id == project)
    return stmt


def get_group(session: Session, context: RequestContext, group_id: str) -> SecurityGroup:
    """A visible group by id; NotFound otherwise (another project's groups do not exist)."""
    group = session.get(SecurityGroup, group_id)
    if group is None or not visible(context, group.project_id):
        raise not_found("SecurityGroupNotFound", f"Security group {group_id} does not exist")
    return group


def find_for_server(session: Session, context: RequestContext, ref: str) -> SecurityGroup:
    """A group named (or with the id) `ref` in the caller's project, for server create."""
    ensure_default(session, context.project_id)
    group = session.get(SecurityGroup, ref)
    if group is not None and visible(context, group.project_id):
        return group
    matches = list(session.scalars(select(SecurityGroup).where(
        SecurityGroup.project_id == context.project_id, SecurityGroup.name == ref)))
    if not matches:
        raise BadRequest(f"Security group {ref} not found for project {context.project_id}.")
    if len(matches) > 1:
        raise Conflict(f"Multiple security groups named {ref}; use an id.")
    return matches[0]


def rules_of(session: Session, group_id: str) -> list[SecurityGroupRule]:
    return list(session.scalars(select(SecurityGroupRule).where(
        SecurityGroupRule.security_group_id == group_id).order_by(SecurityGroupRule.created_at)))


def create_group(session: Session, context: RequestContext, body: Any) -> SecurityGroup:
    """POST /security-groups."""
    context.require_writer()
    spec = _object(body, "security_group")
    name = spec.get("name", "")
    description = spec.get("description", "")
    if not isinstance(name, str) or len(name) > 255:
        raise BadRequest("Invalid input for name: a string of at most 255 characters")
    if not isinstance(description, str) or len(description) > 255:
        raise BadRequest("Invalid input for description: a string of at most 255 characters")
    project = spec.get("project_id") or spec.get("tenant_id") or context.project_id
    if project != context.project_id:
        context.require_admin()
    if name == "default":
        # Neutron makes every project's `default` group on first use: it always exists
        ensure_default(session, project)
        raise Conflict("Default security group already exists.")
    group = SecurityGroup(name=name, description=description, project_id=project,
                          stateful=_stateful(spec.get("stateful", True)))
    session.add(group)
    session.flush()
    for ethertype in ("IPv4", "IPv6"):  # Neutron gives every new group egress rules
        session.add(SecurityGroupRule(security_group_id=group.id, project_id=project,
                                      direction="egress", ethertype=ethertype))
    session.flush()
    return group


def update_group(
    session: Session, context: RequestContext, group_id: str, body: Any
) -> SecurityGroup:
    """PUT /security-groups/{id}: name and description."""
    context.require_writer()
    group = get_group(session, context, group_id)
    spec = _object(body, "security_group")
    for key in ("name", "description"):
        if key in spec:
            value = spec[key]
            if not isinstance(value, str) or len(value) > 255:
                raise BadRequest(f"Invalid input for {key}: a string of at most 255 characters")
            if key == "name" and group.name == "default" and value != "default":
                raise Conflict("Cannot rename the default security group")
            if key == "name" and value == "default" and group.name != "default":
                raise Conflict("Default security group already exists.")
            setattr(group, key, value)
    if "stateful" in spec:
        stateful = _stateful(spec["stateful"])
        if stateful != group.stateful and servers_using(session, group.id):
            raise Conflict(f"Updating Security Group {group.id} stateful attribute is not "
                           "allowed while it is in use.")
        group.stateful = stateful
    group.revision_number += 1
    session.flush()
    return group


def servers_using(session: Session, group_id: str) -> list[str]:
    """Ids of the servers whose ports are in the group (or, portless, that asked for it)."""
    from kumo.network.models import VirtualInterface

    via_ports = session.scalars(select(VirtualInterface.server_id).join(
        PortSecurityGroup, PortSecurityGroup.port_id == VirtualInterface.port_id).where(
        PortSecurityGroup.security_group_id == group_id))
    with_ports = set(session.scalars(select(VirtualInterface.server_id)))
    portless = [s.id for s in session.scalars(select(Server).where(
        Server.vm_state != "deleted"))
                if s.id not in with_ports and group_id in (s.security_group_ids or [])]
    return list(dict.fromkeys([*via_ports, *portless]))


def delete_group(session: Session, context: RequestContext, group_id: str) -> None:
    """DELETE /security-groups/{id}: not while a port uses it; `default` only by admins."""
    context.require_writer()
    group = get_group(session, context, group_id)
    if group.name == "default" and not context.is_admin:
        raise conflict("SecurityGroupCannotRemoveDefault",
                       "Insufficient rights for removing default security group.")
    in_use = session.scalar(select(PortSecurityGroup.port_id).where(
        PortSecurityGroup.security_group_id == group.id))
    if in_use is not None or servers_using(session, group.id):
        raise conflict("SecurityGroupInUse", f"Security Group {group.id} in use.")
    session.delete(group)


def get_rule(session: Session, context: RequestContext, rule_id: str) -> SecurityGroupRule:
    rule = session.get(SecurityGroupRule, rule_id)
    if rule is None or not visible(context, rule.project_id):
        raise not_found("SecurityGroupRuleNotFound",
                        f"Security group rule {rule_id} does not exist")
    return rule


def list_rules(
    session: Session, context: RequestContext, filters: dict[str, str]
) -> list[SecurityGroupRule]:
    keys = ("id", "security_group_id", "direction", "ethertype", "protocol",
            "remote_group_id", "remote_ip_prefix")
    stmt = _visible_matching(SecurityGroupRule, context, filters, keys)
    return list(session.scalars(stmt.order_by(SecurityGroupRule.created_at)))


def create_rule(session: Session, context: RequestContext, body: Any) -> SecurityGroupRule:
    """POST /security-group-rules, validated as Neutron does; duplicates are 409."""
    context.require_writer()
    spec = _object(body, "security_group_rule")
    group_id = spec.get("security_group_id")
    if not isinstance(group_id, str):
        raise BadRequest("Invalid input: security_group_id is required")
    group = get_group(session, context, group_id)
    direction = spec.get("direction")
    if direction not in ("ingress", "egress"):
        raise BadRequest(f"Invalid input for direction: {direction!r} is not ingress or egress")
    ethertype = spec.get("ethertype") or "IPv4"
    if ethertype not in ("IPv4", "IPv6"):
        raise BadRequest(f"Invalid input for ethertype: {ethertype!r} is not IPv4 or IPv6")
    protocol = _protocol(spec.get("protocol"))
    low, high = _ports(canonical_protocol(protocol), spec.get("port_range_min"),
                       spec.get("port_range_max"))
    prefix = _prefix(spec.get("remote_ip_prefix"), ethertype)
    remote_group = spec.get("remote_group_id")
    if remote_group is not None:
        if prefix is not None:
            raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
        get_group(session, context, str(remote_group))
    description = spec.get("description") or ""
    if not isinstance(description, str) or len(description) > 255:
        raise BadRequest("Invalid input for description: a string of at most 255 characters")
    for rule in rules_of(session, group.id):
        same = (rule.direction, rule.ethertype, canonical_protocol(rule.protocol),
                rule.port_range_min, rule.port_range_max, rule.remote_ip_prefix,
                rule.remote_group_id)
        if same == (direction, ethertype, canonical_protocol(protocol), low, high, prefix,
                    remote_group):
            raise conflict("SecurityGroupRuleExists",
                           f"Security group rule already exists. Rule id is {rule.id}.")
    rule = SecurityGroupRule(
        security_group_id=group.id, project_id=group.project_id, direction=direction,
        ethertype=ethertype, protocol=protocol, port_range_min=low, port_range_max=high,
        remote_ip_prefix=prefix, remote_group_id=remote_group, description=description,
    )
    session.add(rule)
    group.revision_number += 1
    session.flush()
    return rule


def delete_rule(session: Session, context: RequestContext, rule_id: str) -> str:
    """DELETE /security-group-rules/{id}; returns the rule's group id."""
    context.require_writer()
    rule = get_rule(session, context, rule_id)
    group_id = rule.security_group_id
    session.delete(rule)
    return group_id


def forwards_for(session: Session, server: Server) -> tuple[PortForward, ...]:
    """The host forwards a server's groups allow (see the module docstring)."""
    wanted: dict[tuple[str, int], None] = {}
    from kumo.network.nics import server_group_ids

    group_ids = server_group_ids(session, server.id)
    if group_ids is None:  # a server without ports keeps the groups it was created with
        group_ids = list(server.security_group_ids or [])
    rules = [r for gid in group_ids for r in rules_of(session, gid)]
    rules = [r for r in rules if _forwardable(r)]
    rules.sort(key=lambda r: (r.port_range_max or 65535) - (r.port_range_min or 1))
    for rule in rules:
        name = canonical_protocol(rule.protocol)
        protocols = ("tcp", "udp") if name in (None, "any") else (str(name),)
        low, high = rule.port_range_min or 1, rule.port_range_max or 65535
        preferred = [p for p in _PREFERRED_PORTS if low <= p <= high]
        for port in [*preferred, *range(low, min(high, low + MAX_FORWARDS) + 1)]:
            for proto in protocols:
                if len(wanted) < MAX_FORWARDS:
                    wanted[(proto, port)] = None
    return tuple(PortForward(proto, port) for proto, port in wanted)


def _forwardable(rule: SecurityGroupRule) -> bool:
    if rule.direction != "ingress" or rule.ethertype != "IPv4" or rule.remote_group_id:
        return False
    if canonical_protocol(rule.protocol) not in (None, "any", "tcp", "udp"):
        return False
    if rule.remote_ip_prefix is None:
        return True
    return _LOCALHOST in ipaddress.ip_network(rule.remote_ip_prefix, strict=False)


def _stateful(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"Invalid input for stateful. Reason: '{value}' is not a valid boolean "
                     "value.")


def canonical_protocol(protocol: str | None) -> str | None:
    """A rule's protocol by name: Neutron stores what was sent ("17" stays "17") but
    compares and enforces "17" and "udp" alike."""
    if protocol is None:
        return None
    return _PROTOCOL_NAMES.get(protocol.lower(), protocol.lower())


def _object(body: Any, key: str) -> dict[str, Any]:
    spec = body.get(key) if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest(f"Resource body required: {{'{key}': {{...}}}}")
    return spec


def _protocol(value: Any) -> str | None:
    """The protocol as given (Neutron keeps "17" as "17"), once it is a valid one."""
    if value is None:
        return None
    name = str(value).lower()
    if name in _PROTOCOLS or name in _PROTOCOL_NAMES:
        return name
    if name.isdigit() and 0 <= int(name) <= 255:
        return str(int(name))
    raise BadRequest(f"Security group rule protocol {value} not supported. Allowed values are "
                     "tcp, udp, icmp, ipv6-icmp, any and integer representations [0 to 255].")


def _port_number(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid value for {what} {value}") from None


def _ports(protocol: str | None, low: Any, high: Any) -> tuple[int | None, int | None]:
    """Neutron's port range checks (its messages: tempest and users match on them)."""
    if low is None and high is None:
        return None, None
    if protocol in (None, "any"):
        raise BadRequest("Must also specify protocol if port range is given.")
    if protocol in ("icmp", "ipv6-icmp"):  # port_range_min/max are ICMP type and code
        kind = _port_number(low, "ICMP type (port-range-min):")
        code = _port_number(high, "ICMP code (port-range-max):")
        if kind is not None and not 0 <= kind <= 255:
            raise BadRequest(f"Invalid value for ICMP type (port-range-min): {kind}")
        if code is not None and not 0 <= code <= 255:
            raise BadRequest(f"Invalid value for ICMP code (port-range-max): {code}")
        if kind is None and code is not None:
            raise BadRequest(f"ICMP code (port-range-max) {code} is provided but ICMP type "
                             "(port-range-min) is missing.")
        return kind, code
    lo, hi = _port_number(low, "port"), _port_number(high, "port")
    for port in (lo, hi):
        if port is not None and not 0 <= port <= 65535:
            raise BadRequest(f"Invalid value for port {port}")
    if lo == 0:
        raise BadRequest("Invalid value for port 0")
    if lo is None or (hi is not None and lo > hi):
        raise BadRequest("For TCP/UDP protocols, port_range_min must be <= port_range_max")
    if hi is None:
        hi = lo
    return lo, hi


def _prefix(value: Any, ethertype: str) -> str | None:
    if value is None:
        return None
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise BadRequest(f"Invalid remote_ip_prefix {value!r}: not a CIDR") from None
    if (network.version == 4) != (ethertype == "IPv4"):
        raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {value}")
    return str(network)
