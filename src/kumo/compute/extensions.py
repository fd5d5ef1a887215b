"""GET /extensions: nova's legacy extension list.

Nova answers a fixed list (nova/api/openstack/compute/extension_info.py) whatever is
deployed, kept for clients from before microversions; kumo answers the same kind of
list, by nova's names and aliases.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import context_of
from kumo.errors import NotFound

# (alias, name, description) as nova lists them
_EXTENSIONS = (
    ("NMN", "Multinic", "Multiple network support."),
    ("OS-DCF", "DiskConfig", "Disk Management Extension."),
    ("OS-EXT-AZ", "ExtendedAvailabilityZone", "Extended Availability Zone support."),
    ("OS-EXT-IMG-SIZE", "ImageSize", "Adds image size to image listings."),
    ("OS-EXT-IPS", "ExtendedIps", "Adds type parameter to the ip list."),
    ("OS-EXT-IPS-MAC", "ExtendedIpsMac", "Adds mac address parameter to the ip list."),
    ("OS-EXT-SRV-ATTR", "ExtendedServerAttributes", "Extended Server Attributes support."),
    ("OS-EXT-STS", "ExtendedStatus", "Extended Status support."),
    ("OS-FLV-DISABLED", "FlavorDisabled", "Support to show the disabled status of a flavor."),
    ("OS-FLV-EXT-DATA", "FlavorExtraData", "Provide additional data for flavors."),
    ("OS-SCH-HNT", "SchedulerHints", "Pass arbitrary key/value pairs to the scheduler."),
    ("OS-SRV-USG", "ServerUsage", "Adds launched_at and terminated_at on Servers."),
    ("os-access-ips", "AccessIPs", "Access IPs support."),
    ("os-admin-actions", "AdminActions", "Enable admin-only server actions."),
    ("os-availability-zone", "AvailabilityZone", "1. Add availability_zone to the Create "
     "Server API. 2. Add availability zones describing."),
    ("os-consoles", "Consoles", "Interactive Console support."),
    ("os-create-backup", "CreateBackup", "Create a backup of a server."),
    ("os-deferred-delete", "DeferredDelete", "Instance deferred delete."),
    ("os-extended-volumes", "ExtendedVolumes", "Extended Volumes support."),
    ("os-flavor-access", "FlavorAccess", "Flavor access support."),
    ("os-flavor-extra-specs", "FlavorExtraSpecs", "Flavors extra specs support."),
    ("os-flavor-manage", "FlavorManage", "Flavor create/delete API support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-hypervisors", "Hypervisors", "Admin-only hypervisor administration."),
    ("os-instance-actions", "InstanceActions", "View a log of actions and events taken on "
     "an instance."),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    ("os-lock-server", "LockServer", "Enable lock/unlock server actions."),
    ("os-multiple-create", "MultipleCreate", "Allow multiple create in the Create Server "
     "v2.1 API."),
    ("os-pause-server", "PauseServer", "Enable pause/unpause server actions."),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    ("os-rescue", "Rescue", "Instance rescue mode."),
    ("os-security-groups", "SecurityGroups", "Security group support."),
    ("os-server-groups", "ServerGroups", "Server group support."),
    ("os-server-password", "ServerPassword", "Server password support."),
    ("os-services", "Services", "Services support."),
    ("os-shelve", "Shelve", "Instance shelve mode."),
    ("os-simple-tenant-usage", "SimpleTenantUsage", "Simple tenant usage extension."),
    ("os-suspend-server", "SuspendServer", "Enable suspend/resume server actions."),
)


def _view(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "links": [],
            "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
            "updated": "2014-12-03T00:00:00Z"}


async def list_extensions(request: Request) -> Response:
    context_of(request)
    return JSONResponse({"extensions": [_view(*e) for e in _EXTENSIONS]})


async def show_extension(request: Request) -> Response:
    context_of(request)
    alias = request.path_params["alias"]
    for entry in _EXTENSIONS:
        if entry[0] == alias:
            return JSONResponse({"extension": _view(*entry)})
    raise NotFound("Extension not found")


def routes(prefix: str) -> list[Route]:
    return [Route(prefix + "/extensions", list_extensions),
            Route(prefix + "/extensions/{alias}", show_extension)]
