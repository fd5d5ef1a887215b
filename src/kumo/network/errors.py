"""Neutron's named errors: the `type` and message its clients expect, on kumo's error tree.

Neutron answers `{"NeutronError": {"type": <exception class>, "message": ...,
"detail": ""}}`; the class name (`NetworkInUse`, `IpAddressGenerationFailure`, ...) is
part of the API: openstacksdk and tempest match on it. Each error here is a
`kumo.errors` class (so the status code comes from one place) that carries its
Neutron type in `neutron_type`, which `kumo.api.errors` puts in the body. Messages are
Neutron's own (neutron-lib `exceptions`), so a search for one finds Neutron's docs.
"""

from __future__ import annotations

from kumo.errors import BadRequest, Conflict, Forbidden, NotFound


class NeutronBadRequest(BadRequest):
    def __init__(self, message: str, kind: str = "BadRequest") -> None:
        super().__init__(message)
        self.neutron_type = kind


class InvalidInput(NeutronBadRequest):
    """neutron-lib's InvalidInput: the message gets Neutron's prefix."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Invalid input for operation: {message.rstrip('.')}.", "InvalidInput")


class NeutronNotFound(NotFound):
    def __init__(self, message: str, kind: str = "NotFound") -> None:
        super().__init__(message)
        self.neutron_type = kind


class NeutronConflict(Conflict):
    def __init__(self, message: str, kind: str = "Conflict") -> None:
        super().__init__(message)
        self.neutron_type = kind


class PolicyNotAuthorized(Forbidden):
    """oslo.policy's refusal, as Neutron words it: `(rule:X) is disallowed by policy`."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"({rule}) is disallowed by policy")
        self.neutron_type = "PolicyNotAuthorized"


def bad_request(kind: str, message: str) -> NeutronBadRequest:
    return NeutronBadRequest(message, kind)


def not_found(kind: str, message: str) -> NeutronNotFound:
    return NeutronNotFound(message, kind)


def conflict(kind: str, message: str) -> NeutronConflict:
    return NeutronConflict(message, kind)


def network_not_found(network_id: str) -> NeutronNotFound:
    return not_found("NetworkNotFound", f"Network {network_id} could not be found.")


def subnet_not_found(subnet_id: str) -> NeutronNotFound:
    return not_found("SubnetNotFound", f"Subnet {subnet_id} could not be found.")


def port_not_found(port_id: str) -> NeutronNotFound:
    return not_found("PortNotFound", f"Port {port_id} could not be found.")


def router_not_found(router_id: str) -> NeutronNotFound:
    return not_found("RouterNotFound", f"Router {router_id} could not be found")


def floating_ip_not_found(fip_id: str) -> NeutronNotFound:
    return not_found("FloatingIPNotFound", f"Floating IP {fip_id} could not be found")


def ip_generation_failure(network_id: str) -> NeutronConflict:
    return conflict("IpAddressGenerationFailure",
                    f"No more IP addresses available on network {network_id}.")


def ip_in_use(network_id: str, ip: str) -> NeutronConflict:
    return conflict("IpAddressInUse", f"Unable to complete operation for network {network_id}. "
                                      f"The IP address {ip} is in use.")


def mac_in_use(network_id: str, mac: str) -> NeutronConflict:
    return conflict("MacAddressInUse", f"Unable to complete operation for network "
                                       f"{network_id}. The mac address {mac} is in use.")


def bad(resource: str, message: str) -> NeutronBadRequest:
    """neutron-lib's BadRequest(resource=..., msg=...): `Bad router request: ...`."""
    return NeutronBadRequest(f"Bad {resource} request: {message.rstrip('.')}.")
