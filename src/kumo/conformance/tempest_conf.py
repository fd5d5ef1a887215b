"""tempest.conf for one running kumo: what kumo is, written as tempest's options.

Dynamic credentials: tempest creates a project and user per test class with the
admin account and deletes them afterwards, as it does against a devstack.
The feature flags say what kumo implements; a test that needs a missing feature is
skipped by tempest itself, with tempest's reason.
"""

from __future__ import annotations

import configparser
import io
from dataclasses import dataclass

from kumo.compute.microversion import MAX_VERSION, text


@dataclass(frozen=True)
class CloudFacts:
    """What tempest needs to know about the kumo under test."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    admin_password: str
    image_ref: str
    image_ref_alt: str
    flavor_ref: str
    flavor_ref_alt: str
    image_file: str  # the tiny image on disk (scenario tests upload it)
    region: str = "RegionOne"
    run_validation: bool = False  # SSH into servers over floating IPs (the bridge driver)
    public_network_id: str = ""  # the external network (`public`), for routers and FIPs
    log_file: str = "tempest.log"


def render(facts: CloudFacts) -> str:
    """The text of tempest.conf for `facts`."""
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # type: ignore[assignment,method-assign]
    for section, options in _sections(facts).items():
        config[section] = {key: _text(value) for key, value in options.items()}
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _sections(facts: CloudFacts) -> dict[str, dict[str, object]]:
    return {
        "DEFAULT": {"log_file": facts.log_file, "use_stderr": False, "debug": True},
        "auth": {
            "use_dynamic_credentials": True,
            # a network, subnet and router per test class's project, when guests are
            # reached over floating IPs (validation)
            "create_isolated_networks": facts.run_validation,
            "admin_username": "admin",
            "admin_password": facts.admin_password,
            "admin_project_name": "admin",
            "admin_domain_name": "Default",
            "default_credentials_domain_name": "Default",
            "tempest_roles": "member",
        },
        "identity": {
            "uri_v3": f"{facts.url}/identity/v3",
            "auth_version": "v3",
            "region": facts.region,
            "v3_endpoint_type": "public",
            "admin_role": "admin",
            "default_domain_id": "default",
        },
        "identity-feature-enabled": {
            "api_v2": False,
            "api_v3": True,
            "application_credentials": True,
            "access_rules": False,
            "project_tags": True,
            "domain_specific_drivers": False,
            "security_compliance": False,
            "trust": False,
            "federation": False,
            "external_idp": False,
            # What kumo's identity implements; OS-INHERIT, OS-OAUTH1, OS-TRUST, OS-EP-FILTER
            # and OS-FEDERATION are not (tempest skips their tests).
            "api_extensions": "OS-EC2",
        },
        "image": {
            "region": facts.region,
            "endpoint_type": "public",
            "container_formats": "bare,ami,ari,aki,ovf,ova,docker,compressed",
            "disk_formats": "qcow2,raw,ami,ari,aki,vhd,vhdx,vmdk,vdi,iso,ploop",
            "image_path": facts.image_file,
        },
        "image-feature-enabled": {
            "api_v2": True,
            "api_v1": False,
            "import_image": True,  # glance-direct (web-download only if allowed)
            "os_glance_reserved": True,
            "manage_locations": False,
        },
        "compute": {
            "region": facts.region,
            "endpoint_type": "public",
            "image_ref": facts.image_ref,
            "image_ref_alt": facts.image_ref_alt,
            "flavor_ref": facts.flavor_ref,
            "flavor_ref_alt": facts.flavor_ref_alt,
            "min_microversion": "2.1",
            # kumo's newest, so tempest skips tests of later microversions
            "max_microversion": text(MAX_VERSION),
            "build_timeout": 300,
            "min_compute_nodes": 1,
        },
        "compute-feature-enabled": {
            "change_password": False,
            "console_output": True,
            "resize": True,
            "pause": True,
            "shelve": True,
            "suspend": True,
            "cold_migration": False,
            "live_migration": False,
            "vnc_console": False,
            "spice_console": False,
            "serial_console": False,
            "rescue": True,
            "snapshot": True,
            "personality": False,
            "attach_encrypted_volume": False,
            "config_drive": True,
            "metadata_service": True,
            "interface_attach": False,
            "block_migration_for_live_migration": False,
        },
        "network": {
            "region": facts.region,
            "endpoint_type": "public",
            "project_networks_reachable": False,
            "shared_physical_network": not facts.run_validation,
            **({"public_network_id": facts.public_network_id,
                "floating_network_name": "public"} if facts.public_network_id else {}),
        },
        "network-feature-enabled": {
            "ipv6": False,
            "floating_ips": bool(facts.public_network_id),
            "api_extensions": "all",
        },
        "validation": {
            "run_validation": facts.run_validation,
            "image_ssh_user": "tiny",  # the tiny image's user (os_admin_user)
            "connect_method": "floating",
            "auth_method": "keypair",
            "ip_version_for_ssh": 4,
            "ssh_timeout": 420,  # software emulation on a shared machine
            "ping_timeout": 240,
        },
        "service_available": {
            "nova": True,
            "glance": True,
            "neutron": True,
            "cinder": False,
            "swift": False,
            "horizon": False,
            "heat": False,
        },
        "volume-feature-enabled": {"api_v3": False},
        "oslo_concurrency": {"lock_path": "tempest-locks"},
    }
