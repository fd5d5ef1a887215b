"""Key pairs: per user, imported (validated) or generated here with `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute import quotas
from kumo.compute.models import KeyPair
from kumo.config import QuotaSettings
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound

_NAME = re.compile(r"^[\w.@\- ]{1,255}$")


@dataclass(frozen=True)
class NewKeyPair:
    record: KeyPair
    private_key: str | None  # only when kumo generated it: shown once, never stored


def owner_of(context: RequestContext, user_id: str | None) -> str:
    """Whose key pairs a call is about: the caller's, or (admins only) another user's."""
    if user_id is None or user_id == context.user_id:
        return context.user_id
    if not context.is_admin:
        raise Forbidden("Policy doesn't allow os_compute_api:os-keypairs to be performed.")
    return user_id


def fingerprint_ssh(public_key: str) -> str:
    """nova's fingerprint: MD5 of the key blob, as colon-separated hex."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def validate_public_key(public_key: str, key_type: str) -> tuple[str, str]:
    """(normalized public key, fingerprint); badRequest when the key cannot be parsed."""
    text = public_key.strip()
    if key_type == "x509":
        try:
            cert = x509.load_pem_x509_certificate(text.encode())
        except ValueError:
            raise BadRequest("Keypair data is invalid: not a PEM X.509 certificate") from None
        digest = cert.fingerprint(hashes.SHA1()).hex()
        return text + "\n", ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    try:
        serialization.load_ssh_public_key(text.encode())
    except (ValueError, IndexError, TypeError) as exc:
        raise BadRequest(f"Keypair data is invalid: cannot parse the public key: {exc}") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for unknown types
        raise BadRequest(f"Keypair data is invalid: {exc}") from None
    return text, fingerprint_ssh(text)


def generate(name: str) -> tuple[str, str]:
    """A new ed25519 key pair in OpenSSH format: (private key, public key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, f"{public} {name}"


def generate_x509(user_id: str) -> tuple[str, str]:
    """A self-signed certificate and its RSA key, as nova's x509 key pairs (2.2)."""
    import datetime

    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id or "kumo")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return private, cert.public_bytes(serialization.Encoding.PEM).decode()


def create_keypair(
    session: Session,
    context: RequestContext,
    name: object,
    *,
    public_key: object = None,
    key_type: object = "ssh",
    user_id: str | None = None,
    allow_generate: bool = True,
    quota: QuotaSettings | None = None,
) -> NewKeyPair:
    """Import `public_key`, or generate a pair when none is given (before 2.92)."""
    context.require_writer()
    owner = owner_of(context, user_id)
    quotas.check_keypairs(session, quota or QuotaSettings(), context, owner)
    if not isinstance(name, str) or not _NAME.match(name) or name != name.strip():
        raise BadRequest(
            "Keypair data is invalid: name must be 1-255 letters, digits, spaces, '.', '@', "
            "'-' or '_' (no leading or trailing spaces)"
        )
    if key_type not in ("ssh", "x509"):
        raise BadRequest(f"Invalid input for field/attribute type: {key_type!r} is not ssh or x509")
    private = None
    if public_key is None:
        if not allow_generate:
            raise BadRequest("Invalid input: 'public_key' is a required property")
        private, public_key = generate(name) if key_type == "ssh" else generate_x509(owner)
    if not isinstance(public_key, str):
        raise BadRequest("Invalid input for field/attribute public_key: expected a string")
    public, fingerprint = validate_public_key(public_key, key_type)
    if session.scalar(select(KeyPair).where(KeyPair.user_id == owner, KeyPair.name == name)):
        raise Conflict(f"Key pair '{name}' already exists.")
    record = KeyPair(name=name, user_id=owner, type=key_type, public_key=public,
                     fingerprint=fingerprint)
    session.add(record)
    session.flush()
    return NewKeyPair(record, private)


def get_keypair(
    session: Session, context: RequestContext, name: str, user_id: str | None = None
) -> KeyPair:
    """The caller's (or, for admins, `user_id`'s) key pair called `name`."""
    owner = owner_of(context, user_id)
    record = session.scalar(select(KeyPair).where(KeyPair.user_id == owner, KeyPair.name == name))
    if record is None:
        raise NotFound(f"Keypair {name} not found for user {owner}")
    return record


def list_keypairs(
    session: Session,
    context: RequestContext,
    user_id: str | None = None,
    limit: int | None = None,
    marker: str | None = None,
) -> list[KeyPair]:
    """Key pairs by name, paged with limit/marker (2.35)."""
    owner = owner_of(context, user_id)
    records = list(
        session.scalars(select(KeyPair).where(KeyPair.user_id == owner).order_by(KeyPair.name))
    )
    if marker is not None:
        names = [r.name for r in records]
        if marker not in names:
            raise BadRequest(f"marker [{marker}] not found")
        records = records[names.index(marker) + 1 :]
    if limit is not None:
        records = records[:limit]
    return records


def delete_keypair(
    session: Session, context: RequestContext, name: str, user_id: str | None = None
) -> None:
    """Servers keep the public key they booted with; deleting the pair does not touch them."""
    context.require_writer()
    session.delete(get_keypair(session, context, name, user_id))
