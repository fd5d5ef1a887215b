"""Named tempest selections: the interop guideline's list, or a regex per API."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

INTEROP_LIST = "interop-2020.06-required.txt"


@dataclass(frozen=True)
class Selection:
    name: str
    regex: str | None = None
    include_list: str | None = None  # a bundled file of test ids (tempest --include-list)
    description: str = ""


SELECTIONS: dict[str, Selection] = {
    s.name: s
    for s in (
        Selection("interop", include_list=INTEROP_LIST,
                  description="the 163 compute/identity/image/network tests OpenStack Powered "
                              "Compute 2020.06 requires"),
        Selection("image", regex=r"^tempest\.api\.image\.v2\.",
                  description="tempest.api.image.v2 (Glance v2)"),
        Selection("identity", regex=r"^tempest\.api\.identity\.",
                  description="tempest.api.identity (Keystone v3)"),
        Selection("ci", regex=r"^tempest\.api\.(image\.v2|identity)\.",
                  description="image v2 and identity: the fast selections .ci/run runs"),
        Selection("compute",
                  regex=r"^tempest\.api\.compute\.(keypairs|flavors|images|servers|limits"
                        r"|test_quotas|test_versions|test_extensions)\.?",
                  description="compute: key pairs, flavors, images, servers, limits, quotas, "
                              "availability zones, server groups"),
        Selection("network", regex=r"^tempest\.api\.network\.",
                  description="tempest.api.network (Neutron v2.0)"),
        Selection("security-groups",
                  regex=r"^tempest\.api\.network\.(test_security_groups|admin\.test_security)",
                  description="Neutron security groups and rules"),
    )
}


def selection_for(name_or_regex: str) -> Selection:
    """A named selection, or an ad-hoc regex over tempest's test ids."""
    if name_or_regex in SELECTIONS:
        return SELECTIONS[name_or_regex]
    return Selection("regex", regex=name_or_regex, description=f"tests matching {name_or_regex}")


def interop_required() -> list[str]:
    """The guideline's required test ids, in the file's order."""
    text = resources.files("kumo.conformance").joinpath(INTEROP_LIST).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]
