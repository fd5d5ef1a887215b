"""kumo's settings: one INI file with OpenStack's option names.

The file is `DATA/kumo.conf`; every option has a default, so the file is optional.
Option names are nova's and glance's where a user would look them up
(`preallocate_images`, `remove_unused_base_images`, `virt_type`, ...).
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path(os.environ.get("KUMO_DATA_DIR", "~/.local/share/kumo")).expanduser()


@dataclass
class ImageCacheSettings:
    """nova.conf `[image_cache]`."""

    manager_interval: int = 2400
    remove_unused_base_images: bool = True
    remove_unused_original_minimum_age_seconds: int = 86400
    remove_unused_resized_minimum_age_seconds: int = 3600
    subdirectory_name: str = "_base"


@dataclass
class ComputeSettings:
    """nova.conf `[DEFAULT]` and `[libvirt]` options kumo honours."""

    virt_type: str = "auto"  # auto | kvm | qemu
    preallocate_images: str = "none"  # none | space
    use_cow_images: bool = True
    force_raw_images: bool = True
    # Outbound guest traffic beyond the host: off unless the operator turns it on.
    allow_guest_outbound: bool = False
    # nova: > 0 makes DELETE a soft delete, reclaimed (really deleted) after this many seconds
    reclaim_instance_interval: int = 0
    # nova: seconds a shelved server keeps its guest on the host; 0 = offload at once, -1 = never
    shelved_offload_time: int = 0
    num_pcie_ports: int = 8  # empty PCIe root ports per guest: its volume hot-plug slots
    device_detach_timeout: int = 20  # seconds per request to the guest to release a volume
    device_detach_attempts: int = 8


@dataclass
class VolumeSettings:
    """cinder.conf options kumo honours (Block Storage)."""

    volume_driver: str = "qcow2"  # kumo's driver name (cinder's takes a class path)
    quota_volumes: int = 10
    quota_snapshots: int = 10
    quota_gigabytes: int = 1000


@dataclass
class ImageImportSettings:
    """glance-api.conf's interoperable image import options."""

    image_import_plugins: list[str] = field(default_factory=lambda: ["image_conversion"])
    output_format: str = "qcow2"  # [image_conversion]
    # [import_filtering_opts], kumo's own: web-download only from URLs starting so.
    allowed_url_prefixes: list[str] = field(default_factory=list)


@dataclass
class MetadataSettings:
    """What the metadata service tells guests."""

    mtu: int = 1450
    dns_nameservers: list[str] = field(default_factory=lambda: ["169.254.2.3"])


@dataclass
class NetworkSettings:
    """Guest networks (`[network]`); option names are Neutron's where it has one."""

    # auto: real networks (bridges in kumo's own namespace) when kumo can build them
    # (root, iproute2, dnsmasq, nftables), else QEMU user-mode networking.
    driver: str = "auto"  # auto | bridge | user
    # Tenant networks are VXLAN-ready: MTU = global_physnet_mtu - 50 (Neutron's rule).
    global_physnet_mtu: int = 1500
    # The external network (`public`): its subnet; the host takes its first address.
    external_cidr: str = "172.24.4.0/24"
    # The floating IP range of its subnet ("START-END"; default: all but the host's address)
    # and the external network's name (devstack's).
    external_allocation_pool: str = ""
    external_network_name: str = "public"
    # Where a project's default private network takes its /default_prefixlen from.
    default_subnet_pool: str = "10.0.0.0/16"
    default_prefixlen: int = 24
    # Neutron's: whether a router gateway does SNAT unless the request says (admins
    # only may say): outbound NAT for guests, off unless the operator allows it.
    enable_snat_by_default: bool = False
    # Upstream DNS servers dnsmasq forwards guests' other names to (Neutron's
    # dnsmasq_dns_servers); empty: guests resolve only the cloud's own names.
    dnsmasq_dns_servers: list[str] = field(default_factory=list)
    # The caching proxy for guests' package downloads (apt-cacher-ng in the namespace).
    package_proxy: bool = True
    package_proxy_port: int = 3142
    # Its download limit in KiB/s (seed 004's 100 kB/s); 0: no limit.
    package_proxy_max_rate: int = 0
    # The mirrors it may fetch from; empty: the host's own apt sources.
    package_proxy_mirrors: list[str] = field(default_factory=list)

    @property
    def tenant_mtu(self) -> int:
        return self.global_physnet_mtu - 50


@dataclass
class StoreSettings:
    """Where image bytes live (`[glance_store]`, glance_store's option names)."""

    default_store: str = "file"  # file | swift | s3
    filesystem_store_datadir: str = ""  # default: DATA/images
    swift_store_auth_address: str = ""  # http://HOST:5000/v3 (keystone) or .../auth/v1.0
    swift_store_auth_version: str = "3"  # 1 (tempauth, swauth) | 3 (keystone)
    swift_store_user: str = ""  # "PROJECT:USER" (keystone) or "ACCOUNT:USER" (v1)
    swift_store_key: str = ""
    swift_store_container: str = "glance"
    swift_store_create_container_on_put: bool = True
    swift_store_large_object_chunk_size: int = 200  # MiB per SLO segment
    s3_store_host: str = ""  # http(s)://HOST:PORT of the S3 endpoint
    s3_store_access_key: str = ""
    s3_store_secret_key: str = ""
    s3_store_bucket: str = "glance"
    s3_store_create_bucket_on_put: bool = True
    s3_store_bucket_url_format: str = "path"  # path | virtual | auto
    s3_store_region_name: str = "us-east-1"
    s3_store_large_object_chunk_size: int = 10  # MiB per multipart part (5 at least)


@dataclass
class QuotaSettings:
    """nova's [quota] defaults for every project (-1 = unlimited)."""

    instances: int = 10
    cores: int = 20
    ram: int = 51200  # MB
    metadata_items: int = 128
    key_pairs: int = 100
    server_groups: int = 10
    server_group_members: int = 10
    injected_files: int = 5
    injected_file_content_bytes: int = 10240
    injected_file_path_length: int = 255


@dataclass
class ConsoleSettings:
    """nova.conf `[console]` and `[consoleauth]`: the websocket consoles' checks."""

    # Hosts (besides the one a request names) whose pages may open a console websocket.
    allowed_origins: list[str] = field(default_factory=list)
    token_ttl: int = 600  # seconds a console URL stays usable (once)


@dataclass
class IdentitySettings:
    """keystone.conf `[identity]`: the cost of password hashes (bcrypt rounds); and
    keystonemiddleware's `[keystone_authtoken] token_cache_time`: seconds an API process
    reuses a token it validated (0: validate every request). keystonemiddleware's default
    is 300; kumo's is short, and an identity change made through this process (a revoked
    token, a removed role, a disabled user) drops the whole cache at once, so only another
    API process's change can take up to this long to be seen here."""

    password_hash_rounds: int = 12
    token_cache_time: int = 5


@dataclass
class AgentSettings:
    """A compute host's own options (`kumo agent`, and `kumo up` on PostgreSQL)."""

    host: str = ""  # nova's `host`: this compute host's name (default: the hostname)
    listen: str = "0.0.0.0:8775"  # where the agent answers the API's calls to it
    my_ip: str = ""  # nova's `my_ip`: this host's address for other hosts (default: guessed)
    default_availability_zone: str = "nova"
    cpu_allocation_ratio: float = 4.0  # nova's initial_cpu_allocation_ratio
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    report_interval: int = 10  # seconds between heartbeats
    service_down_time: int = 60  # a host not heard from this long is down


@dataclass
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = 8774
    database_url: str = ""  # default: sqlite:///DATA/kumo.db
    public_url: str = ""  # default: http://HOST:PORT
    region: str = "RegionOne"
    admin_password: str = ""  # default: generated once and kept in DATA/admin-password
    image_cache: ImageCacheSettings = field(default_factory=ImageCacheSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    volume: VolumeSettings = field(default_factory=VolumeSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    image_import: ImageImportSettings = field(default_factory=ImageImportSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'kumo.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def images_dir(self) -> Path:
        return Path(self.store.filesystem_store_datadir or self.data_dir / "images")

    @property
    def instances_path(self) -> Path:
        return self.data_dir / "instances"

    @property
    def base_dir(self) -> Path:
        return self.instances_path / self.image_cache.subdirectory_name

    @property
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def staging_dir(self) -> Path:
        """Image data staged for import (Glance's os_glance_staging_store)."""
        return self.data_dir / "staging"

    @property
    def run_dir(self) -> Path:
        """Sockets, pid files and other things that do not outlive a restart."""
        return self.data_dir / "run"


_SECTIONS: dict[str, tuple[str, ...]] = {
    # section -> attribute paths of Settings that can be set there
    "DEFAULT": (
        "host",
        "port",
        "database_url",
        "public_url",
        "region",
        "admin_password",
        "compute.preallocate_images",
        "compute.use_cow_images",
        "compute.force_raw_images",
        "compute.allow_guest_outbound",
        "compute.reclaim_instance_interval",
        "compute.shelved_offload_time",
        *(f"volume.{name}" for name in VolumeSettings.__dataclass_fields__),
        # nova's names for a compute host, in nova's section
        *(f"agent.{name}" for name in AgentSettings.__dataclass_fields__
          if name not in ("host", "listen")),
    ),
    "agent": ("agent.host", "agent.listen"),
    "glance_store": tuple(f"store.{name}" for name in StoreSettings.__dataclass_fields__),
    "libvirt": ("compute.virt_type", "compute.num_pcie_ports",
                "compute.device_detach_timeout", "compute.device_detach_attempts"),
    "image_cache": tuple(f"image_cache.{name}" for name in ImageCacheSettings.__dataclass_fields__),
    "metadata": ("metadata.mtu", "metadata.dns_nameservers"),
    "image_import_opts": ("image_import.image_import_plugins",),
    "image_conversion": ("image_import.output_format",),
    "import_filtering_opts": ("image_import.allowed_url_prefixes",),
    "network": tuple(f"network.{name}" for name in NetworkSettings.__dataclass_fields__),
    "quota": tuple(f"quota.{name}" for name in QuotaSettings.__dataclass_fields__),
    "console": ("console.allowed_origins",),
    "consoleauth": ("console.token_ttl",),
    "identity": ("identity.password_hash_rounds",),
    "keystone_authtoken": ("identity.token_cache_time",),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "compute.virt_type": ("auto", "kvm", "qemu"),
    "compute.preallocate_images": ("none", "space"),
    "network.driver": ("auto", "bridge", "user"),
    "store.default_store": ("file", "swift", "s3"),
    "store.swift_store_auth_version": ("1", "3"),
    "store.s3_store_bucket_url_format": ("path", "virtual", "auto"),
    "volume.volume_driver": ("qcow2",),
    "image_import.output_format": ("qcow2", "raw"),
}


class ConfigError(ValueError):
    """The config file has an unknown option or a value of the wrong kind."""


def _convert(path: str, raw: str, current: object) -> object:
    if isinstance(current, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected true or false, got {raw!r}")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"expected a number, got {raw!r}") from None
    if isinstance(current, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    value = raw.strip()
    choices = _CHOICES.get(path)
    if choices and value not in choices:
        raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _assign(settings: Settings, path: str, raw: str) -> None:
    target: object = settings
    *parents, leaf = path.split(".")
    for name in parents:
        target = getattr(target, name)
    setattr(target, leaf, _convert(path, raw, getattr(target, leaf)))


def load_settings(data_dir: Path | None = None, config_file: Path | None = None) -> Settings:
    """Settings from `config_file` (default `DATA/kumo.conf`, optional) over the defaults."""
    settings = Settings()
    if data_dir is not None:
        settings.data_dir = data_dir.expanduser().resolve()
    path = config_file or settings.data_dir / "kumo.conf"
    if not path.exists():
        if config_file is not None:
            raise ConfigError(f"{path}: no such config file")
        return settings
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    except configparser.Error as exc:
        # Missing section header, duplicate option, a line that is not `name = value`...
        raise ConfigError(f"{path}: not a valid INI file: {exc.message}") from None
    for section in parser.sections():
        allowed = _SECTIONS.get(section)
        if allowed is None:
            known = ", ".join(f"[{name}]" for name in _SECTIONS)
            raise ConfigError(f"{path}: unknown section [{section}]; kumo reads {known}")
        by_name = {entry.rsplit(".", 1)[-1]: entry for entry in allowed}
        for name, raw in parser.items(section):
            entry = by_name.get(name)
            if entry is None:
                raise ConfigError(
                    f"{path}: unknown option {name!r} in [{section}]; "
                    f"options there: {', '.join(sorted(by_name))}"
                )
            try:
                _assign(settings, entry, raw)
            except ConfigError as exc:
                raise ConfigError(f"{path}: [{section}] {name}: {exc}") from None
    _check(settings, path)
    return settings


def _check(settings: Settings, path: Path) -> None:
    """Value checks that span more than one type conversion."""
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"{path}: [DEFAULT] port: {settings.port} is not between 0 and 65535")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{path}: [DEFAULT] public_url: expected an http:// or https:// URL, "
            f"got {settings.public_url!r}"
        )
    if not 0 <= settings.identity.token_cache_time <= 3600:
        raise ConfigError(f"{path}: [keystone_authtoken] token_cache_time: "
                          f"{settings.identity.token_cache_time} is not in 0..3600")
    if not 4 <= settings.identity.password_hash_rounds <= 31:
        raise ConfigError(f"{path}: [identity] password_hash_rounds: "
                          f"{settings.identity.password_hash_rounds} is not in 4..31")
    if not 576 <= settings.metadata.mtu <= 9000:
        raise ConfigError(f"{path}: [metadata] mtu: {settings.metadata.mtu} is not in 576..9000")
    _check_network(settings.network, path)
    _check_store(settings.store, path)
    for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
                 "report_interval", "service_down_time"):
        if getattr(settings.agent, name) <= 0:
            raise ConfigError(f"{path}: [DEFAULT] {name}: must be above 0")
    for name in ("manager_interval", "remove_unused_original_minimum_age_seconds",
                 "remove_unused_resized_minimum_age_seconds"):
        value = getattr(settings.image_cache, name)
        # nova: manager_interval -1 disables the cache manager, 0 runs it at the default rate.
        low = -1 if name == "manager_interval" else 0
        if value < low:
            raise ConfigError(f"{path}: [image_cache] {name}: {value} is below {low}")
    if settings.console.token_ttl < 1:
        raise ConfigError(f"{path}: [consoleauth] token_ttl: {settings.console.token_ttl} "
                          "is below 1")
    if not 0 <= settings.compute.num_pcie_ports <= 28:  # nova's range
        raise ConfigError(f"{path}: [libvirt] num_pcie_ports: "
                          f"{settings.compute.num_pcie_ports} is not in 0..28")
    for name in ("device_detach_timeout", "device_detach_attempts"):
        if getattr(settings.compute, name) < 1:
            raise ConfigError(f"{path}: [libvirt] {name}: must be at least 1")
    _check_volume_and_import(settings, path)
    subdir = settings.image_cache.subdirectory_name
    if not subdir or "/" in subdir or subdir in (".", ".."):
        raise ConfigError(
            f"{path}: [image_cache] subdirectory_name: {subdir!r} must be a plain directory name"
        )


def _check_network(network: NetworkSettings, path: Path) -> None:
    import ipaddress

    if not 1280 <= network.global_physnet_mtu <= 9050:
        raise ConfigError(f"{path}: [network] global_physnet_mtu: "
                          f"{network.global_physnet_mtu} is not in 1280..9050")
    for name in ("external_cidr", "default_subnet_pool"):
        value = getattr(network, name)
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ConfigError(f"{path}: [network] {name}: {exc}") from None
        if net.version != 4 or net.prefixlen > 29:
            raise ConfigError(f"{path}: [network] {name}: {value} must be an IPv4 "
                              "network of at least 8 addresses")
    pool = ipaddress.ip_network(network.default_subnet_pool)
    if not pool.prefixlen <= network.default_prefixlen <= 30:
        raise ConfigError(f"{path}: [network] default_prefixlen: {network.default_prefixlen} "
                          f"is not between {pool.prefixlen} and 30")
    for server in network.dnsmasq_dns_servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"{path}: [network] dnsmasq_dns_servers: {server!r} is not "
                              "an IP address") from None
    if not 1 <= network.package_proxy_port <= 65535 or network.package_proxy_max_rate < 0:
        raise ConfigError(f"{path}: [network] package_proxy_port must be 1..65535 and "
                          "package_proxy_max_rate 0 or more")


def _check_store(store: StoreSettings, path: Path) -> None:
    needed = {"swift": ("swift_store_auth_address", "swift_store_user", "swift_store_key"),
              "s3": ("s3_store_host", "s3_store_access_key", "s3_store_secret_key")}
    for name in needed.get(store.default_store, ()):
        if not getattr(store, name):
            raise ConfigError(f"{path}: [glance_store] {name}: needed with "
                              f"default_store = {store.default_store}")
    if store.swift_store_large_object_chunk_size < 1:
        raise ConfigError(f"{path}: [glance_store] swift_store_large_object_chunk_size: "
                          "at least 1 (MiB)")
    if store.s3_store_large_object_chunk_size < 5:
        raise ConfigError(f"{path}: [glance_store] s3_store_large_object_chunk_size: at "
                          "least 5 (MiB): S3 refuses smaller multipart parts")


def _check_volume_and_import(settings: Settings, path: Path) -> None:
    for name in ("quota_volumes", "quota_snapshots", "quota_gigabytes"):
        if getattr(settings.volume, name) < -1:  # -1: unlimited, as in cinder
            raise ConfigError(f"{path}: [DEFAULT] {name}: must be -1 (unlimited) or more")
    unknown = set(settings.image_import.image_import_plugins) - {"image_conversion"}
    if unknown:
        raise ConfigError(f"{path}: [image_import_opts] image_import_plugins: unknown plugin(s) "
                          f"{', '.join(sorted(unknown))}; kumo has image_conversion")
    for prefix in settings.image_import.allowed_url_prefixes:
        if not prefix.startswith(("http://", "https://")) or prefix.count("/") < 3:
            raise ConfigError(
                f"{path}: [import_filtering_opts] allowed_url_prefixes: {prefix!r} must be an "
                "http:// or https:// URL including the host and a path, e.g. "
                "https://cloud.debian.org/images/")
