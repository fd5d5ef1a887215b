"""DATA/kumo.conf: nova's option names, defaults, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.config import ConfigError, load_settings


def write_conf(tmp_path: Path, text: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "kumo.conf").write_text(text)
    return data


def test_no_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "data")
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert (settings.host, settings.port) == ("127.0.0.1", 8774)
    assert settings.compute.virt_type == "auto"
    assert settings.image_cache.remove_unused_base_images is True
    assert settings.image_cache.remove_unused_original_minimum_age_seconds == 86400
    assert settings.db_url == f"sqlite:///{settings.data_dir / 'kumo.db'}"
    assert settings.base_dir == settings.data_dir / "instances" / "_base"


def test_nova_option_names_are_read(tmp_path: Path) -> None:
    data = write_conf(
        tmp_path,
        """
[DEFAULT]
port = 9999
public_url = https://cloud.example.org/
preallocate_images = space
use_cow_images = false
force_raw_images = no

[libvirt]
virt_type = qemu

[image_cache]
manager_interval = -1
remove_unused_base_images = off
remove_unused_original_minimum_age_seconds = 60
subdirectory_name = cache

[metadata]
mtu = 1400
dns_nameservers = 10.0.0.2, 10.0.0.3

[network]
external_cidr = 203.0.113.0/24
default_subnet_pool = 10.8.0.0/16
default_prefixlen = 26
global_physnet_mtu = 9000
enable_snat_by_default = true
""",
    )
    settings = load_settings(data)
    assert settings.port == 9999
    assert settings.base_url == "https://cloud.example.org"
    assert settings.compute.preallocate_images == "space"
    assert settings.compute.use_cow_images is False
    assert settings.compute.force_raw_images is False
    assert settings.compute.virt_type == "qemu"
    assert settings.image_cache.manager_interval == -1
    assert settings.image_cache.remove_unused_base_images is False
    assert settings.image_cache.remove_unused_original_minimum_age_seconds == 60
    assert settings.base_dir == settings.data_dir / "instances" / "cache"
    assert settings.metadata.mtu == 1400
    assert settings.metadata.dns_nameservers == ["10.0.0.2", "10.0.0.3"]
    assert settings.network.external_cidr == "203.0.113.0/24"
    assert (settings.network.default_subnet_pool, settings.network.default_prefixlen) == (
        "10.8.0.0/16", 26)
    assert settings.network.tenant_mtu == 8950 and settings.network.enable_snat_by_default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[nova]\nhost = x\n", r"unknown section \[nova\]; kumo reads \[DEFAULT\]"),
        ("[DEFAULT]\nvirt_type = kvm\n", r"unknown option 'virt_type' in \[DEFAULT\]"),
        ("[libvirt]\nvirt_type = xen\n", r"\[libvirt\] virt_type: expected one of auto, kvm"),
        ("[DEFAULT]\nport = eighty\n", r"\[DEFAULT\] port: expected a whole number"),
        ("[DEFAULT]\nport = 70000\n", r"port: 70000 is not between 0 and 65535"),
        ("[DEFAULT]\nuse_cow_images = maybe\n", r"use_cow_images: expected true or false"),
        ("[DEFAULT]\npublic_url = cloud:80\n", r"public_url: expected an http"),
        ("[image_cache]\nmanager_interval = -5\n", r"manager_interval: -5 is below -1"),
        ("[image_cache]\nsubdirectory_name = ../x\n", r"subdirectory_name: '../x'"),
        ("[metadata]\nmtu = 20\n", r"mtu: 20 is not in 576..9000"),
        ("[glance_store]\ndefault_store = rbd\n", r"default_store: expected one of file, swift"),
        ("[glance_store]\ndefault_store = swift\n",
         r"swift_store_auth_address: needed with default_store = swift"),
        ("[glance_store]\ndefault_store = s3\ns3_store_host = http://s3\n",
         r"s3_store_access_key: needed with default_store = s3"),
        ("[glance_store]\ns3_store_large_object_chunk_size = 1\n", r"at least 5 \(MiB\)"),
        ("[network]\ndefault_prefixlen = 8\n", r"default_prefixlen: 8 is not between 16"),
        ("[image_conversion]\noutput_format = vmdk\n", r"output_format: expected one of qcow2"),
        ("[image_import_opts]\nimage_import_plugins = inject_metadata\n",
         r"unknown plugin\(s\) inject_metadata"),
        ("[import_filtering_opts]\nallowed_url_prefixes = ftp://x/\n",
         r"allowed_url_prefixes: 'ftp://x/' must be an http"),
        ("port = 1\n", r"not a valid INI file"),
        ("[DEFAULT]\nport = 1\nport = 2\n", r"not a valid INI file"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, text: str, expected: str) -> None:
    data = write_conf(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(data)
    assert str(data / "kumo.conf") in str(caught.value)


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "data", tmp_path / "missing.conf")


def test_explicit_config_file_wins_over_data_dir(tmp_path: Path) -> None:
    write_conf(tmp_path, "[DEFAULT]\nregion = FromDataDir\n")
    other = tmp_path / "other.conf"
    other.write_text("[DEFAULT]\nregion = FromFlag\n")
    assert load_settings(tmp_path / "data", other).region == "FromFlag"
    assert load_settings(tmp_path / "data").region == "FromDataDir"


def test_every_documented_option_is_in_the_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    from kumo.config import _SECTIONS

    for section, entries in _SECTIONS.items():
        assert f"[{section}]" in docs
        for entry in entries:
            assert f"`{entry.rsplit('.', 1)[-1]}`" in docs, entry


def test_object_store_options(tmp_path: Path) -> None:
    data = write_conf(tmp_path, "[glance_store]\ndefault_store = s3\n"
                      "s3_store_host = http://s3.lan:8080\ns3_store_access_key = a\n"
                      "s3_store_secret_key = b\ns3_store_bucket = images\n"
                      "filesystem_store_datadir = /srv/images\n")
    settings = load_settings(data)
    assert settings.store.default_store == "s3" and settings.store.s3_store_bucket == "images"
    assert settings.images_dir == Path("/srv/images")
