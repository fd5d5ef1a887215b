"""kumo's metadata part: the EC2/OpenStack metadata service and config drives.

Interface for other parts:
- `MetadataService(source, run_dir, settings, adopt=...)`: `start()`/`stop()` (a
  runtime service), `open_channel(server_id) -> Path` (the unix socket QEMU's
  guestfwd relays to), `close_channel(server_id)`, `invalidate(server_id)`.
- `build_config_drive(view, dest) -> Path`: the `config-2` ISO.
- `validate_user_data(b64) -> bytes`, `MAX_USER_DATA`: for `server create`.
"""

from kumo.metadata.configdrive import build_config_drive
from kumo.metadata.instance import InstanceSource, InstanceView, PublicKey
from kumo.metadata.service import MetadataService
from kumo.metadata.userdata import MAX_USER_DATA, validate_user_data

__all__ = [
    "MAX_USER_DATA",
    "InstanceSource",
    "InstanceView",
    "MetadataService",
    "PublicKey",
    "build_config_drive",
    "validate_user_data",
]
