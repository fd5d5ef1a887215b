"""User data as Nova receives it: base64 text, at most 64 KiB once decoded.

The compute API calls `validate_user_data` at `server create`; what it returns is
stored and later served byte for byte (gzip, MIME multipart, scripts alike).
"""

from __future__ import annotations

import binascii
import re

from kumo.errors import BadRequest

MAX_USER_DATA = 65536
# Longest base64 text (without whitespace) that can decode to MAX_USER_DATA bytes:
# anything longer is refused before it is decoded.
_MAX_ENCODED = (MAX_USER_DATA + 2) // 3 * 4
_WHITESPACE = re.compile(r"\s+")


def validate_user_data(b64: str) -> bytes:
    """Decode Nova's `user_data` (base64); BadRequest when malformed or over 64 KiB."""
    if not isinstance(b64, str):
        raise BadRequest("Invalid user_data: expected a base64-encoded string")
    # Clients wrap long base64 at 76 columns (RFC 2045); the line breaks carry nothing.
    text = _WHITESPACE.sub("", b64)
    if len(text) > _MAX_ENCODED:
        raise BadRequest(
            f"User data too large: more than {MAX_USER_DATA} bytes (64 KiB) once decoded; "
            "put larger payloads in an image or fetch them from the guest"
        )
    if len(text) % 4:
        raise BadRequest("Invalid user_data: it is not valid base64 (length not a multiple of 4)")
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadRequest("Invalid user_data: it is not valid base64") from None
    if len(data) > MAX_USER_DATA:
        raise BadRequest(
            f"User data too large: {len(data)} bytes once decoded; the limit is "
            f"{MAX_USER_DATA} bytes (64 KiB)"
        )
    return data
