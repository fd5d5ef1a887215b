"""The service catalog kumo's tokens carry: one region, every API of this kumo."""

from __future__ import annotations

import hashlib
from typing import Any

from kumo.runtime import Runtime

SERVICES = (
    # (type, name) as in a devstack catalog
    ("identity", "keystone"),
    ("image", "glance"),
    ("compute", "nova"),
    ("network", "neutron"),
)


def _stable_id(*parts: str) -> str:
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


def catalog(runtime: Runtime) -> list[dict[str, Any]]:
    from kumo.api.app import endpoint

    region = runtime.settings.region
    entries = []
    for service_type, name in SERVICES:
        url = endpoint(runtime, service_type)
        entries.append(
            {
                "id": _stable_id(service_type),
                "type": service_type,
                "name": name,
                "endpoints": [
                    {
                        "id": _stable_id(service_type, interface),
                        "interface": interface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }
                    for interface in ("public", "internal", "admin")
                ],
            }
        )
    return entries
