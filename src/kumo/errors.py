"""One error tree for all of kumo.

Every part raises these; `kumo.api.errors` turns them into HTTP responses in the
shape each OpenStack service's clients expect (Keystone, Glance, Nova, Neutron).
Messages are for people: say what was wrong and, where it helps, what to do.
"""

from __future__ import annotations

from typing import ClassVar


class KumoError(Exception):
    """Base of every error kumo raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    nova_key: ClassVar[str] = "computeFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(KumoError):
    status = 400
    title = "Bad Request"
    nova_key = "badRequest"


class Unauthorized(KumoError):
    status = 401
    title = "Unauthorized"
    nova_key = "unauthorized"


class Forbidden(KumoError):
    status = 403
    title = "Forbidden"
    nova_key = "forbidden"


class NotFound(KumoError):
    status = 404
    title = "Not Found"
    nova_key = "itemNotFound"


class MethodNotAllowed(KumoError):
    status = 405
    title = "Method Not Allowed"
    nova_key = "badMethod"


class Conflict(KumoError):
    status = 409
    title = "Conflict"
    nova_key = "conflictingRequest"


class PayloadTooLarge(KumoError):
    status = 413
    title = "Request Entity Too Large"
    nova_key = "overLimit"


class UnsupportedMediaType(KumoError):
    status = 415
    title = "Unsupported Media Type"
    nova_key = "badMediaType"


class RangeNotSatisfiable(KumoError):
    status = 416
    title = "Requested Range Not Satisfiable"
    nova_key = "badRequest"


class ServiceUnavailable(KumoError):
    status = 503
    title = "Service Unavailable"
    nova_key = "serviceUnavailable"


class InsufficientStorage(KumoError):
    """The disk kumo writes to is full (or over a configured limit)."""

    status = 507
    title = "Insufficient Storage"
    nova_key = "computeFault"


class ToolError(KumoError):
    """An external program (qemu-img, qemu-system, mke2fs, ...) failed.

    The message carries the program's own stderr, trimmed, so a user sees why.
    """

    status = 500
    title = "Internal Server Error"
    nova_key = "computeFault"

    def __init__(self, program: str, message: str) -> None:
        super().__init__(f"{program}: {message}")
        self.program = program


class ToolMissing(KumoError):
    """A program kumo needs is not installed; the message names the Debian package."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(
            f"{program} is not installed; install it with: apt-get install {package}"
        )
        self.program = program
        self.package = package
