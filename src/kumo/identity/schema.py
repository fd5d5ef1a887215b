"""Check Keystone v3 request bodies for projects, users and roles.

Each `*_fields` function takes the JSON object under `project`/`user`/`role` and
returns only validated, typed fields (unknown attributes go to `extra`, as in
Keystone). Anything malformed is a BadRequest naming the field.
"""

from __future__ import annotations

from typing import Any

from kumo.errors import BadRequest

DOMAIN_ID = "default"
MAX_TAGS = 80
MAX_PASSWORD = 4096  # scrypt cost grows with length; Keystone has no limit, we need one

# Attributes Keystone manages itself: a client may not set them.
_READ_ONLY = {"id", "links", "password_expires_at", "federated"}


def _string(body: dict[str, Any], key: str, what: str, *, low: int, high: int) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for field '{key}': {what} must be a string.")
    if not low <= len(value) <= high:
        raise BadRequest(
            f"Invalid input for field '{key}': {what} must be {low} to {high} characters long."
        )
    return value


def _name(body: dict[str, Any], high: int) -> str:
    name = _string(body, "name", "the name", low=1, high=high)
    if name.strip() != name or not name.strip():
        raise BadRequest("Invalid input for field 'name': no leading or trailing blanks.")
    return name


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise BadRequest(f"Invalid input for field '{key}': {value!r} is not of type 'boolean'.")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str:
    if body[key] is None:
        return ""
    return _string(body, key, key, low=0, high=65535)


def _id_ref(body: dict[str, Any], key: str) -> str | None:
    """An optional id field (domain_id, parent_id): a string or null."""
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 64):
        raise BadRequest(f"Invalid input for field '{key}': {value!r} is not an id.")
    return value


def _options(body: dict[str, Any]) -> None:
    value = body.get("options")
    if value not in (None, {}):
        raise BadRequest("Invalid input for field 'options': kumo supports no resource options.")


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadRequest(f"Invalid input for field 'tags': a list of at most {MAX_TAGS} strings.")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 255 or "/" in tag or "," in tag:
            raise BadRequest(
                f"Invalid input for field 'tags': {tag!r} must be 1 to 255 characters "
                "without '/' or ','."
            )
        if tag not in tags:
            tags.append(tag)
    return tags


def _extra(body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    bad = sorted(_READ_ONLY & set(body))
    if bad:
        raise BadRequest(f"Invalid input: {', '.join(bad)} cannot be set by a client.")
    return {key: value for key, value in body.items() if key not in known | _READ_ONLY}


def for_update(body: dict[str, Any], own_id: str) -> dict[str, Any]:
    """An update body without the read-only fields a client sent back as it read them
    (its own id, links); a different id is still refused."""
    if "id" in body and body["id"] != own_id:
        raise BadRequest("Invalid input: the id in the body differs from the one in the URL.")
    return {k: v for k, v in body.items() if k not in ("id", "links")}


def object_under(body: Any, key: str) -> dict[str, Any]:
    """`body[key]` as a JSON object, or a 400 that says what was expected."""
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Expecting to find {key} in request body as a JSON object.")
    value: dict[str, Any] = body[key]
    return value


def _named_fields(body: dict[str, Any], *, creating: bool, high: int) -> dict[str, Any]:
    """name (required on create), description, enabled, tags: projects' and domains' own."""
    if creating and "name" not in body:
        raise BadRequest("Invalid input for field 'name': 'name' is a required property.")
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body, high)
    if "description" in body:
        fields["description"] = _optional_text(body, "description")
    if "enabled" in body:
        fields["enabled"] = _bool(body, "enabled")
    if "tags" in body:
        fields["tags"] = _tags(body["tags"])
    return fields


_PROJECT_KNOWN = {
    "name", "description", "enabled", "domain_id", "parent_id", "is_domain", "tags", "options",
}


def project_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated project attributes; `creating` requires a name."""
    fields = _named_fields(body, creating=creating, high=64)
    if "domain_id" in body:
        if not creating:
            raise BadRequest("Invalid input for field 'domain_id': a project cannot move to "
                             "another domain.")
        fields["domain_id"] = _id_ref(body, "domain_id")
    if "parent_id" in body:
        if not creating:
            raise BadRequest("Invalid input for field 'parent_id': a project cannot move.")
        fields["parent_id"] = _id_ref(body, "parent_id")
    if body.get("is_domain"):
        raise BadRequest("Invalid input for field 'is_domain': create domains with "
                         "POST /v3/domains.")
    _options(body)
    extra = _extra(body, _PROJECT_KNOWN)
    if extra:
        fields["extra"] = extra
    return fields


_USER_KNOWN = {
    "name", "password", "description", "email", "enabled", "domain_id", "default_project_id",
    "options",
}


def password_value(body: dict[str, Any], key: str = "password") -> str:
    if key not in body:
        raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property.")
    return _string(body, key, "the password", low=1, high=MAX_PASSWORD)


def user_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated user attributes; `password` stays plain here, the service hashes it."""
    if creating and "name" not in body:
        raise BadRequest("Invalid input for field 'name': 'name' is a required property.")
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body, 255)
    if body.get("password") is not None:
        fields["password"] = password_value(body)
    for key in ("description", "email"):
        if key in body:
            fields[key] = _optional_text(body, key)
    if "enabled" in body:
        fields["enabled"] = _bool(body, "enabled")
    if "default_project_id" in body:
        value = body["default_project_id"]
        if value is not None and not isinstance(value, str):
            raise BadRequest("Invalid input for field 'default_project_id': must be a string.")
        fields["default_project_id"] = value or None
    if "domain_id" in body:
        if not creating:
            raise BadRequest("Invalid input for field 'domain_id': a user cannot move to "
                             "another domain.")
        fields["domain_id"] = _id_ref(body, "domain_id")
    _options(body)
    extra = _extra(body, _USER_KNOWN)
    if extra:
        fields["extra"] = extra
    return fields


def role_fields(body: dict[str, Any], *, creating: bool = True) -> dict[str, Any]:
    """A role: a name and an optional description, global (no domain)."""
    if creating and "name" not in body:
        raise BadRequest("Invalid input for field 'name': 'name' is a required property.")
    if body.get("domain_id") is not None:
        raise BadRequest("Invalid input for field 'domain_id': kumo has global roles only.")
    _options(body)
    unknown = sorted(set(body) - {"name", "description", "domain_id", "options"})
    if unknown:
        raise BadRequest(f"Invalid input: unknown role attribute(s) {', '.join(unknown)}.")
    fields = {}
    if "name" in body:
        fields["name"] = _name(body, 255)
    if "description" in body:
        fields["description"] = _optional_text(body, "description")
    return fields


_DOMAIN_KNOWN = {"name", "description", "enabled", "tags", "options"}


def domain_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated domain attributes; `creating` requires a name."""
    fields = _named_fields(body, creating=creating, high=64)
    _options(body)
    extra = _extra(body, _DOMAIN_KNOWN | {"domain_id", "is_domain", "parent_id"})
    if extra:
        fields["extra"] = extra
    return fields


def group_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated group attributes: name, description, domain_id (on create)."""
    if creating and "name" not in body:
        raise BadRequest("Invalid input for field 'name': 'name' is a required property.")
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body, 255)
    if "description" in body:
        fields["description"] = _optional_text(body, "description")
    if "domain_id" in body:
        if not creating:
            raise BadRequest("Invalid input for field 'domain_id': a group cannot move.")
        fields["domain_id"] = _id_ref(body, "domain_id")
    extra = _extra(body, {"name", "description", "domain_id"})
    if extra:
        fields["extra"] = extra
    return fields


def tag_value(tag: str) -> str:
    """One project tag from a URL (`PUT /v3/projects/{id}/tags/{tag}`)."""
    return _tags([tag])[0]


def tags_value(body: Any) -> list[str]:
    """`{"tags": [...]}` for `PUT /v3/projects/{id}/tags`."""
    if not isinstance(body, dict) or "tags" not in body:
        raise BadRequest("Expecting to find tags in request body.")
    return _tags(body["tags"])
