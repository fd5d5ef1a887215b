"""The EC2 and OpenStack trees, path by path, as nova serves them."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import date

import pytest

from kumo.errors import NotFound
from kumo.metadata.instance import NicAddress, NicView, PublicKey
from kumo.metadata.trees import (
    EC2_VERSIONS,
    OPENSTACK_VERSIONS,
    Defaults,
    config_drive_files,
    lookup,
)
from tests.metadata.conftest import BINARY_USER_DATA, SERVER_A, make_view

VIEW = make_view(SERVER_A, "alpha")


def text(path: str, view=VIEW) -> str:  # type: ignore[no-untyped-def]
    return lookup(view, path).body.decode()


def test_root_lists_ec2_versions_and_latest() -> None:
    assert text("/").split("\n") == [*EC2_VERSIONS, "latest"]
    assert EC2_VERSIONS[0] == "1.0" and EC2_VERSIONS[-1] == "2009-04-04"


def test_version_folder_lists_meta_data_and_user_data() -> None:
    assert text("/latest") == "meta-data/\nuser-data"
    assert text("/2009-04-04/") == "meta-data/\nuser-data"
    assert text("/latest", replace(VIEW, user_data=None)) == "meta-data/"


def test_meta_data_listing_of_latest_has_nova_keys_and_folders() -> None:
    listing = text("/latest/meta-data/").split("\n")
    assert listing == [
        "ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/",
        "hostname", "instance-action", "instance-id", "instance-type", "local-hostname",
        "local-ipv4", "placement/", "public-hostname", "public-ipv4", "public-keys/",
        "reservation-id", "security-groups",
    ]


def test_old_versions_leave_out_newer_keys() -> None:
    listing = text("/1.0/meta-data").split("\n")
    assert "local-hostname" not in listing and "instance-type" not in listing
    assert "placement/" not in listing and "block-device-mapping/" not in listing
    assert "instance-id" in listing and "public-keys/" in listing
    assert "instance-type" in text("/2007-08-29/meta-data").split("\n")
    assert "placement/" not in text("/2007-12-15/meta-data").split("\n")
    with pytest.raises(NotFound):
        lookup(VIEW, "/1.0/meta-data/placement/availability-zone")


def test_meta_data_values() -> None:
    assert text("/latest/meta-data/hostname") == "alpha"
    assert text("/latest/meta-data/instance-id").startswith("i-")
    assert text("/latest/meta-data/local-ipv4") == "169.254.2.15"
    assert text("/latest/meta-data/placement/") == "availability-zone"
    assert text("/latest/meta-data/placement/availability-zone") == "nova"
    assert text("/latest/meta-data/security-groups") == "default"
    assert text("/latest/meta-data/instance-type") == "m1.tiny"
    assert text("/latest/meta-data/ami-launch-index") == "0"
    assert text("/latest/meta-data/block-device-mapping") == "ami\nroot"
    assert text("/latest/meta-data/block-device-mapping/root") == "/dev/vda"


def test_kernel_and_ramdisk_ids_only_when_present() -> None:
    assert "kernel-id" not in text("/latest/meta-data")
    view = replace(VIEW, kernel_id="aki-00000001", ramdisk_id="ari-00000002")
    assert text("/latest/meta-data/kernel-id", view) == "aki-00000001"
    assert text("/latest/meta-data/ramdisk-id", view) == "ari-00000002"


def test_public_keys_are_rendered_like_nova() -> None:
    assert text("/latest/meta-data/public-keys/") == "0=key-alpha"
    assert text("/latest/meta-data/public-keys/0/") == "openssh-key"
    key = text("/latest/meta-data/public-keys/0/openssh-key")
    assert key == "ssh-ed25519 AAAAC3Nzaalpha alpha@test"
    with pytest.raises(NotFound):
        lookup(VIEW, "/latest/meta-data/public-keys/0/_name")
    with pytest.raises(NotFound):
        lookup(replace(VIEW, keys=()), "/latest/meta-data/public-keys/")


def test_several_keys_are_numbered() -> None:
    view = replace(VIEW, keys=(*VIEW.keys, PublicKey("second", "ssh", "ssh-rsa BBB")))
    assert text("/latest/meta-data/public-keys", view) == "0=key-alpha\n1=second"
    assert text("/latest/meta-data/public-keys/1/openssh-key", view) == "ssh-rsa BBB"


def test_user_data_bytes_pass_through_and_404_when_none() -> None:
    view = replace(VIEW, user_data=BINARY_USER_DATA)
    assert lookup(view, "/latest/user-data").body == BINARY_USER_DATA
    assert lookup(view, "/openstack/latest/user_data").body == BINARY_USER_DATA
    empty = replace(VIEW, user_data=None)
    for path in ("/latest/user-data", "/openstack/latest/user_data"):
        with pytest.raises(NotFound):
            lookup(empty, path)


@pytest.mark.parametrize(
    "path",
    ["/nope", "/latest/meta-data/nope", "/latest/meta-data/hostname/more",
     "/2010-01-01/meta-data", "/openstack/2011-01-01/meta_data.json",
     "/openstack/latest/nope.json", "/openstack/latest/meta_data.json/x",
     "/openstack/content/0000", "/openstack/2012-08-10/vendor_data.json"],
)
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(NotFound):
        lookup(VIEW, path)


def test_paths_are_normalised_like_nova() -> None:
    assert text("//latest//meta-data/../meta-data/hostname/") == "alpha"
    assert text("/ec2/latest/meta-data/hostname") == "alpha"


def test_openstack_versions_hide_future_dates() -> None:
    listing = lookup(VIEW, "/openstack", today=date(2026, 11, 1)).body.decode().split("\n")
    assert listing == [*OPENSTACK_VERSIONS, "latest"]
    assert listing[:2] == ["2012-08-10", "2013-04-04"] and "2020-10-14" in listing
    early = lookup(VIEW, "/openstack/", today=date(2019, 1, 1)).body.decode().split("\n")
    assert early[-2:] == ["2018-08-27", "latest"]


def test_openstack_version_listing() -> None:
    assert text("/openstack/latest").split("\n") == [
        "meta_data.json", "user_data", "password", "vendor_data.json",
        "network_data.json", "vendor_data2.json",
    ]
    assert text("/openstack/2012-08-10/") == "meta_data.json\nuser_data"


def test_meta_data_json_latest() -> None:
    document = lookup(VIEW, "/openstack/latest/meta_data.json")
    assert document.content_type == "application/json"
    md = json.loads(document.body)
    assert md["uuid"] == SERVER_A and md["name"] == "alpha" and md["hostname"] == "alpha"
    assert md["public_keys"] == {"key-alpha": "ssh-ed25519 AAAAC3Nzaalpha alpha@test"}
    assert md["keys"] == [
        {"name": "key-alpha", "type": "ssh", "data": "ssh-ed25519 AAAAC3Nzaalpha alpha@test"}
    ]
    assert md["launch_index"] == 0 and md["availability_zone"] == "nova"
    assert md["project_id"] == "proj-alpha" and md["meta"] == {"role": "alpha"}
    assert md["devices"] == [] and md["dedicated_cpus"] == []
    assert len(base64.b64decode(md["random_seed"])) == 512


def test_meta_data_json_of_folsom_has_no_newer_keys() -> None:
    md = json.loads(lookup(VIEW, "/openstack/2012-08-10/meta_data.json").body)
    assert "random_seed" not in md and "project_id" not in md and "devices" not in md
    md = json.loads(lookup(VIEW, "/openstack/2018-08-27/meta_data.json").body)
    assert "devices" in md and "dedicated_cpus" not in md


def test_vendor_data() -> None:
    assert json.loads(lookup(VIEW, "/openstack/latest/vendor_data.json").body) == {}
    assert json.loads(lookup(VIEW, "/openstack/latest/vendor_data2.json").body) == {
        "static": {}
    }


def test_network_data_carries_mtu_mac_and_dns() -> None:
    view = replace(VIEW, mtu=1400, mac_address="52:54:00:aa:bb:cc", network_id="net-1")
    nd = json.loads(lookup(view, "/openstack/latest/network_data.json",
                           Defaults(dns_nameservers=("169.254.2.3",))).body)
    (link,) = nd["links"]
    assert link["mtu"] == 1400 and link["ethernet_mac_address"] == "52:54:00:aa:bb:cc"
    assert link["type"] == "ethernet" and link["vif_id"]
    (network,) = nd["networks"]
    assert network["type"] == "ipv4_dhcp" and network["link"] == link["id"]
    assert network["network_id"] == "net-1"
    assert nd["services"] == [{"type": "dns", "address": "169.254.2.3"}]
    own_dns = replace(view, dns_nameservers=("10.0.0.53",))
    nd = json.loads(lookup(own_dns, "/openstack/latest/network_data.json",
                           Defaults(dns_nameservers=("169.254.2.3",))).body)
    assert nd["services"] == [{"type": "dns", "address": "10.0.0.53"}]


def test_network_data_of_real_nics_is_static_and_in_order() -> None:
    nics = (
        NicView("port-one-0000000", "net-1", "fa:16:3e:00:00:01", 1450, (
            NicAddress("10.0.0.5", "255.255.255.0", "10.0.0.1",
                       (("169.254.169.254/32", "10.0.0.2"),), ("10.0.0.2",)),)),
        NicView("port-two-0000000", "net-2", "fa:16:3e:00:00:02", 1400, (
            NicAddress("10.1.0.5", "255.255.255.0", None, (), ("10.0.0.2", "9.9.9.9")),)),
    )
    view = replace(VIEW, nics=nics, local_ipv4="10.0.0.5")
    nd = json.loads(lookup(view, "/openstack/latest/network_data.json").body)
    assert [(link["id"], link["mtu"], link["ethernet_mac_address"]) for link in nd["links"]] == [
        ("tapport-one-00", 1450, "fa:16:3e:00:00:01"),
        ("tapport-two-00", 1400, "fa:16:3e:00:00:02")]
    first, second = nd["networks"]
    assert (first["type"], first["ip_address"], first["link"]) == (
        "ipv4", "10.0.0.5", "tapport-one-00")
    assert first["routes"] == [
        {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
        {"network": "169.254.169.254", "netmask": "255.255.255.255", "gateway": "10.0.0.2"}]
    assert second["routes"] == [] and second["id"] == "network1"
    assert nd["services"] == [{"type": "dns", "address": "10.0.0.2"},
                              {"type": "dns", "address": "9.9.9.9"}]
    assert text("/latest/meta-data/local-ipv4", view) == "10.0.0.5"
    files = dict(config_drive_files(view, Defaults()))
    assert json.loads(files["openstack/latest/network_data.json"]) == nd


def test_config_drive_layout_is_novas() -> None:
    files = dict(config_drive_files(replace(VIEW, user_data=BINARY_USER_DATA), Defaults()))
    assert files["ec2/latest/user-data"] == BINARY_USER_DATA
    assert files["openstack/latest/user_data"] == BINARY_USER_DATA
    assert "ec2/1.0/meta-data.json" not in files  # nova skips the old EC2 versions
    ec2 = json.loads(files["ec2/2009-04-04/meta-data.json"])
    assert ec2["public-keys"] == {"0": {"openssh-key": "ssh-ed25519 AAAAC3Nzaalpha alpha@test"}}
    assert ec2["hostname"] == "alpha"
    for version in (*OPENSTACK_VERSIONS, "latest"):
        assert f"openstack/{version}/meta_data.json" in files
    assert "openstack/2012-08-10/vendor_data.json" not in files
    assert "openstack/latest/network_data.json" in files
    assert "openstack/latest/vendor_data2.json" in files
    assert not any(name.endswith("/password") for name in files)
