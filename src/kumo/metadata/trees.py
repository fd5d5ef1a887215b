"""The EC2 and OpenStack metadata trees of one server, as nova serves them.

Pure functions of an `InstanceView`: the HTTP service and the config drive both
render from here, so a guest reads the same bytes either way. Paths, listings,
version gates and 404s follow nova/api/metadata/base.py.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Union

from kumo.errors import NotFound
from kumo.metadata.instance import InstanceView, NicView

EC2_VERSIONS: tuple[str, ...] = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
)

FOLSOM = "2012-08-10"
GRIZZLY = "2013-04-04"
HAVANA = "2013-10-17"
LIBERTY = "2015-10-15"
NEWTON_ONE = "2016-06-30"
NEWTON_TWO = "2016-10-06"
OCATA = "2017-02-22"
ROCKY = "2018-08-27"
VICTORIA = "2020-10-14"
EPOXY = "2025-04-04"
OPENSTACK_VERSIONS: tuple[str, ...] = (
    FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA, EPOXY,
)

# Versions nova leaves out of a config drive (`config_drive_skip_versions`).
CONFIG_DRIVE_EC2_VERSIONS: tuple[str, ...] = ("2009-04-04", "latest")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"

# A node of the EC2 tree: a leaf (text, number, raw bytes), a list shown one item
# per line, or a folder. A folder may carry "_name", the line its parent lists for it
# (nova's `public-keys/` -> `0=name` quirk).
Node = Union[str, int, bytes, list[str], "Folder"]
Folder = dict[str, Node]


@dataclass(frozen=True)
class Document:
    """One answer of the metadata service: bytes and their media type."""

    body: bytes
    content_type: str


@dataclass(frozen=True)
class Defaults:
    """What a view leaves empty and the operator's settings fill in."""

    dns_nameservers: tuple[str, ...] = ()


def _at_least(required: str, requested: str, versions: Sequence[str]) -> bool:
    return versions.index(requested) >= versions.index(required)


def ec2_id(prefix: str, uuid: str) -> str:
    """EC2-style id (`i-0a1b2c3d`) from a UUID: stable, and unique enough to tell servers apart."""
    digits = uuid.replace("-", "")[:8].lower() or "0"
    try:
        return f"{prefix}-{int(digits, 16):08x}"
    except ValueError:
        return f"{prefix}-{digits}"


def ec2_meta_data(view: InstanceView, version: str) -> Folder:
    """The `meta-data/` folder of EC2 version `version` (or "latest")."""
    if version == "latest":
        version = EC2_VERSIONS[-1]
    if version not in EC2_VERSIONS:
        raise NotFound(f"no EC2 metadata version {version!r}")
    md: Folder = {
        "ami-id": ec2_id("ami", view.image_id) if view.image_id else "",
        "ami-launch-index": view.launch_index,
        "ami-manifest-path": "FIXME",  # what nova says; no client reads it
        "instance-id": ec2_id("i", view.uuid),
        "hostname": view.hostname,
        "local-ipv4": view.local_ipv4,
        "reservation-id": view.reservation_id or ec2_id("r", view.uuid),
        "security-groups": list(view.security_groups),
    }
    ssh_keys = [key for key in view.keys if key.type == "ssh"]
    if ssh_keys:
        md["public-keys"] = {
            str(index): {"_name": f"{index}={key.name}", "openssh-key": key.data}
            for index, key in enumerate(ssh_keys)
        }
    if _at_least("2007-01-19", version, EC2_VERSIONS):
        md["local-hostname"] = view.hostname
        md["public-hostname"] = view.hostname
        md["public-ipv4"] = view.public_ipv4
    if _at_least("2007-08-29", version, EC2_VERSIONS):
        md["instance-type"] = view.instance_type
    if _at_least("2007-12-15", version, EC2_VERSIONS):
        # The root disk is the first virtio disk (nova: ami = strip_dev(root), root).
        md["block-device-mapping"] = {"ami": "vda", "root": "/dev/vda"}
        if view.kernel_id:
            md["kernel-id"] = view.kernel_id
        if view.ramdisk_id:
            md["ramdisk-id"] = view.ramdisk_id
    if _at_least("2008-02-01", version, EC2_VERSIONS):
        md["placement"] = {"availability-zone": view.availability_zone}
    if _at_least("2008-09-01", version, EC2_VERSIONS):
        md["instance-action"] = "none"
    return md


def ec2_version_folder(view: InstanceView, version: str) -> Folder:
    folder: Folder = {"meta-data": ec2_meta_data(view, version)}
    if view.user_data is not None:
        folder["user-data"] = view.user_data
    return folder


def render_node(node: Node) -> bytes:
    """Text of a node the way nova's `ec2_md_print` writes it."""
    if isinstance(node, dict):
        lines = []
        for key in sorted(node):
            if key == "_name":
                continue
            child = node[key]
            if isinstance(child, dict):
                lines.append(str(child["_name"]) if "_name" in child else key + "/")
            else:
                lines.append(key)
        return "\n".join(lines).encode()
    if isinstance(node, list):
        return "\n".join(node).encode()
    if isinstance(node, bytes):
        return node
    return str(node).encode()


def meta_data_json(view: InstanceView, version: str) -> dict[str, object]:
    """meta_data.json of OpenStack version `version` (already resolved, not "latest")."""
    md: dict[str, object] = {"uuid": view.uuid}
    if view.meta:
        md["meta"] = dict(view.meta)
    if view.keys:
        md["public_keys"] = {key.name: key.data for key in view.keys}
        md["keys"] = [{"name": key.name, "type": key.type, "data": key.data} for key in view.keys]
    md["hostname"] = view.hostname
    md["name"] = view.name
    md["launch_index"] = view.launch_index
    md["availability_zone"] = view.availability_zone
    if _at_least(GRIZZLY, version, OPENSTACK_VERSIONS):
        md["random_seed"] = base64.b64encode(os.urandom(512)).decode()
    if _at_least(LIBERTY, version, OPENSTACK_VERSIONS):
        md["project_id"] = view.project_id
    if _at_least(NEWTON_ONE, version, OPENSTACK_VERSIONS):
        md["devices"] = []
    if _at_least(VICTORIA, version, OPENSTACK_VERSIONS):
        md["dedicated_cpus"] = []
    return md


def network_data_json(view: InstanceView, defaults: Defaults) -> dict[str, object]:
    """network_data.json: every NIC, or QEMU user networking's one DHCP link."""
    if view.nics:
        return _static_network_data(view.nics)
    port_id = view.port_id or view.uuid
    link = "tap" + port_id[:11]  # nova names links after the host's tap device
    nameservers = view.dns_nameservers or defaults.dns_nameservers
    return {
        "links": [
            {
                "id": link,
                "vif_id": port_id,
                "type": "ethernet",
                "mtu": view.mtu,
                "ethernet_mac_address": view.mac_address,
            }
        ],
        "networks": [
            {"id": "network0", "type": "ipv4_dhcp", "link": link, "network_id": view.network_id}
        ],
        "services": [{"type": "dns", "address": address} for address in nameservers],
    }


def _static_network_data(nics: Sequence[NicView]) -> dict[str, object]:
    """As nova's netutils renders static IPv4 (so cloud-init sets what DHCP also gives).

    One link per NIC (named after its tap, type `bridge`: the VIF type of a Linux bridge
    port), one `ipv4` network per address with netmask, default route via the gateway,
    the subnet's routes and DNS servers; the DNS servers again at the top level.
    """
    links: list[dict[str, object]] = []
    networks: list[dict[str, object]] = []
    services: list[dict[str, str]] = []
    for nic in nics:
        link = "tap" + nic.port_id[:11]
        links.append({"id": link, "vif_id": nic.port_id, "type": "bridge", "mtu": nic.mtu,
                      "ethernet_mac_address": nic.mac})
        for address in nic.addresses:
            routes = []
            if address.gateway:
                routes.append({"network": "0.0.0.0", "netmask": "0.0.0.0",
                               "gateway": address.gateway})
            for destination, nexthop in address.routes:
                net = ipaddress.IPv4Network(destination)
                routes.append({"network": str(net.network_address), "netmask": str(net.netmask),
                               "gateway": nexthop})
            dns = [{"type": "dns", "address": server} for server in address.dns]
            networks.append({"id": f"network{len(networks)}", "type": "ipv4", "link": link,
                             "ip_address": address.address, "netmask": address.netmask,
                             "routes": routes, "network_id": nic.network_id,
                             "services": dns})
            services += [entry for entry in dns if entry not in services]
    return {"links": links, "networks": networks, "services": services}


def _json(value: object) -> Document:
    return Document(json.dumps(value).encode(), JSON)


def openstack_listing(view: InstanceView, version: str) -> list[str]:
    names = ["meta_data.json"]
    if view.user_data is not None:
        names.append("user_data")
    if _at_least(GRIZZLY, version, OPENSTACK_VERSIONS):
        names.append("password")
    if _at_least(HAVANA, version, OPENSTACK_VERSIONS):
        names.append("vendor_data.json")
    if _at_least(LIBERTY, version, OPENSTACK_VERSIONS):
        names.append("network_data.json")
    if _at_least(NEWTON_TWO, version, OPENSTACK_VERSIONS):
        names.append("vendor_data2.json")
    return names


def openstack_document(
    view: InstanceView, version: str, name: str, defaults: Defaults
) -> Document:
    """One file of the OpenStack tree; `version` may be "latest"."""
    if version == "latest":
        version = OPENSTACK_VERSIONS[-1]
    if version not in OPENSTACK_VERSIONS:
        raise NotFound(f"no OpenStack metadata version {version!r}")
    if name == "":
        return Document("\n".join(openstack_listing(view, version)).encode(), TEXT)
    if name == "meta_data.json":
        return _json(meta_data_json(view, version))
    if name == "user_data" and view.user_data is not None:
        return Document(view.user_data, OCTETS)
    # nova serves network_data.json for every version but lists it from Liberty on.
    if name == "network_data.json":
        return _json(network_data_json(view, defaults))
    if name == "password" and _at_least(GRIZZLY, version, OPENSTACK_VERSIONS):
        return Document(b"", TEXT)  # no password was ever posted
    if name == "vendor_data.json" and _at_least(HAVANA, version, OPENSTACK_VERSIONS):
        return _json(view.vendor_data)
    if name == "vendor_data2.json" and _at_least(NEWTON_TWO, version, OPENSTACK_VERSIONS):
        return _json({"static": {}})  # nova's default provider (StaticJSON) with no file
    raise NotFound(f"no {name!r} in OpenStack metadata version {version}")


def normalize(path: str) -> list[str]:
    """Path tokens after nova's normalisation (`posixpath.normpath`, no trailing slash)."""
    clean = posixpath.normpath("/" + path.lstrip("/"))
    return [token for token in clean.split("/") if token]


def lookup(
    view: InstanceView, path: str, defaults: Defaults = Defaults(), today: date | None = None
) -> Document:
    """What `GET path` answers for `view`; raises NotFound like nova's InvalidMetadataPath."""
    tokens = normalize(path)
    if not tokens:
        return Document("\n".join([*EC2_VERSIONS, "latest"]).encode(), TEXT)
    if tokens[0] == "openstack":
        if len(tokens) == 1:
            day = (today or datetime.now(UTC).date()).isoformat()
            shown = [version for version in OPENSTACK_VERSIONS if version <= day]
            return Document("\n".join([*shown, "latest"]).encode(), TEXT)
        if len(tokens) > 3:
            raise NotFound(f"no {'/'.join(tokens)!r} in the OpenStack tree")
        return openstack_document(view, tokens[1], tokens[2] if len(tokens) == 3 else "", defaults)
    if tokens[0] == "ec2":
        tokens = tokens[1:]
        if not tokens:
            return Document("\n".join([*EC2_VERSIONS, "latest"]).encode(), TEXT)
    node: Node = ec2_version_folder(view, tokens[0])
    for index, token in enumerate(tokens[1:], start=1):
        if not isinstance(node, dict) or token not in node or token == "_name":
            raise NotFound(f"no {'/'.join(tokens[: index + 1])!r} in the EC2 tree")
        node = node[token]
    content_type = OCTETS if isinstance(node, bytes) else TEXT
    return Document(render_node(node), content_type)


def config_drive_files(view: InstanceView, defaults: Defaults) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every file on a config drive, in nova's layout."""
    for version in CONFIG_DRIVE_EC2_VERSIONS:
        folder = ec2_version_folder(view, version)
        user_data = folder.pop("user-data", None)
        if isinstance(user_data, bytes):
            yield f"ec2/{version}/user-data", user_data
        meta = folder["meta-data"]
        assert isinstance(meta, dict)
        keys = meta.get("public-keys")
        if isinstance(keys, dict):
            # On a drive the `0=name` listing line has no meaning: nova drops it.
            meta["public-keys"] = {
                index: {k: v for k, v in entry.items() if k != "_name"}
                for index, entry in keys.items()
                if isinstance(entry, dict)
            }
        yield f"ec2/{version}/meta-data.json", json.dumps(meta).encode()
    for version in (*OPENSTACK_VERSIONS, "latest"):
        resolved = OPENSTACK_VERSIONS[-1] if version == "latest" else version
        names = [name for name in openstack_listing(view, resolved) if name != "password"]
        for name in names:
            yield f"openstack/{version}/{name}", openstack_document(
                view, version, name, defaults
            ).body
