"""`GET /v2/images`: Glance's filters, sorting and marker paging.

Filters that narrow the candidate set a lot (owner, visibility, status, name) run in
SQL; the rest, and sorting with a stable tie-breaker, run over those candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.errors import BadRequest
from kumo.image import access
from kumo.image.lifecycle import DELETED, MEMBER_STATUSES, VISIBILITIES
from kumo.image.models import Image

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "owner",
    "min_disk",
    "min_ram",
    "virtual_size",
    "protected",
    "os_hidden",
)
CONTROL = frozenset({"limit", "marker", "sort_key", "sort_dir", "sort", "member_status"})
COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


@dataclass
class ListQuery:
    limit: int = DEFAULT_LIMIT
    marker: str | None = None
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    member_status: str = "accepted"
    filters: list[tuple[str, str]] = field(default_factory=list)
    raw: list[tuple[str, str]] = field(default_factory=list)


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} param must be an integer, got {value!r}") from None
    if number < 0:
        raise BadRequest(f"{name} param must be positive")
    return number


def parse_query(params: Sequence[tuple[str, str]]) -> ListQuery:
    """Check the query string of an image list; 400 on anything malformed."""
    query = ListQuery(raw=list(params))
    keys: list[str] = []
    dirs: list[str] = []
    sort_param: str | None = None
    for name, value in params:
        if name == "limit":
            query.limit = min(_int("limit", value), MAX_LIMIT)
        elif name == "marker":
            query.marker = value
        elif name == "sort_key":
            keys.extend(v.strip() for v in value.split(","))
        elif name == "sort_dir":
            dirs.extend(v.strip() for v in value.split(","))
        elif name == "sort":
            sort_param = value
        elif name == "member_status":
            if value not in (*MEMBER_STATUSES, "all"):
                raise BadRequest(f"Invalid member_status {value!r}")
            query.member_status = value
        else:
            query.filters.append((name, value))
    if sort_param is not None and (keys or dirs):
        raise BadRequest("The 'sort' parameter cannot be combined with sort_key/sort_dir")
    pairs: list[tuple[str, str]] = []
    if sort_param is not None:
        for item in sort_param.split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    elif keys:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest(
                "The number of sort_dir values must match the number of sort_key values"
            )
        for index, key in enumerate(keys):
            direction = dirs[index] if len(dirs) > 1 else (dirs[0] if dirs else "desc")
            pairs.append((key, direction))
    elif dirs:
        pairs = [("created_at", dirs[0])]
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key!r}. Valid keys: {', '.join(SORT_KEYS)}")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction!r}. Expected asc or desc")
    if pairs:
        query.sort = pairs
    return query


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"Invalid date {value!r}: expected ISO 8601, e.g. 2016-04-18T21:38:54Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"Invalid value for {name}: {value!r} (expected true or false)")


def _matcher(name: str, raw: str) -> Callable[[Image], bool]:
    """A predicate for one `name=value` filter (with `in:` and the date operators)."""
    if name in ("size_min", "size_max"):
        bound = _int(name, raw)
        if name == "size_min":
            return lambda i: i.size is not None and i.size >= bound
        return lambda i: i.size is not None and i.size <= bound
    if name in ("created_at", "updated_at"):
        op, sep, rest = raw.partition(":")
        if not sep or op not in COMPARATORS:
            raise BadRequest(
                f"Invalid {name} filter {raw!r}: use gt:, gte:, lt:, lte:, eq: or neq:"
            )
        moment, compare = _parse_time(rest), COMPARATORS[op]
        return lambda i: compare(_as_utc(getattr(i, name)), moment)
    if name == "tag":
        return lambda i: raw in i.tag_list()
    if name in ("protected", "os_hidden"):
        flag = _bool(name, raw)
        return lambda i: bool(getattr(i, name)) == flag
    if name in ("min_disk", "min_ram"):
        number = _int(name, raw)
        return lambda i: getattr(i, name) == number
    values = raw[3:].split(",") if raw.startswith("in:") else [raw]
    if name in (
        "name",
        "owner",
        "status",
        "disk_format",
        "container_format",
        "id",
        "checksum",
        "os_hash_value",
    ):
        return lambda i: getattr(i, name) in values
    return lambda i: i.property_dict().get(name) in values


def _visible(
    context: RequestContext, image: Image, visibility: str | None, member_status: str
) -> bool:
    if visibility is None:
        return access.listed_by_default(context, image, member_status)
    if visibility == "all":
        return access.listed_by_default(context, image, member_status) or (
            image.visibility == "community"
        )
    if image.visibility != visibility or not access.can_read(context, image):
        return False
    if visibility == "shared" and not (context.is_admin or access.is_owner(context, image)):
        member = access.membership(context, image)
        return member is not None and member_status in ("all", member.status)
    return True


def _sort_value(image: Image, key: str) -> tuple[int, Any]:
    value = getattr(image, key)
    if isinstance(value, datetime):
        value = _as_utc(value)
    return (0, None) if value is None else (1, value)


def run_query(
    session: Session, context: RequestContext, query: ListQuery
) -> tuple[list[Image], str | None]:
    """The page of images the caller may list, and the id to put in `next` (or None)."""
    visibility: str | None = None
    matchers: list[Callable[[Image], bool]] = []
    os_hidden_filter = False
    stmt = select(Image).where(Image.status != DELETED)
    for name, value in query.filters:
        if name == "visibility":
            if value not in (*VISIBILITIES, "all"):
                raise BadRequest(f"Invalid visibility value {value!r}")
            visibility = value
            continue
        if name == "os_hidden":
            os_hidden_filter = True
        matchers.append(_matcher(name, value))
    if not os_hidden_filter:
        # Hidden images are left out unless asked for (os_hidden=true).
        matchers.append(lambda i: not i.os_hidden)
    candidates = [
        image
        for image in session.scalars(stmt)
        if _visible(context, image, visibility, query.member_status)
        and all(match(image) for match in matchers)
    ]
    ordering = [*query.sort]
    if not any(key == "id" for key, _ in ordering):
        ordering.append(("id", ordering[-1][1] if ordering else "desc"))
    for key, direction in reversed(ordering):
        candidates.sort(key=partial(_sort_value, key=key), reverse=direction == "desc")
    start = 0
    if query.marker is not None:
        ids = [image.id for image in candidates]
        if query.marker not in ids:
            raise BadRequest(f"marker {query.marker!r} not found among the images you can list")
        start = ids.index(query.marker) + 1
    page = candidates[start : start + query.limit]
    more = len(page) == query.limit and start + query.limit < len(candidates)
    return page, (page[-1].id if more and page else None)


def next_link(query: ListQuery, marker: str) -> str:
    params: list[tuple[str, str]] = [(k, v) for k, v in query.raw if k != "marker"]
    params.append(("marker", marker))
    if not any(k == "limit" for k, _ in params):
        params.append(("limit", str(query.limit)))
    return "/v2/images?" + urlencode(params)


def first_link(query: Mapping[str, str] | None = None) -> str:
    return "/v2/images" + (("?" + urlencode(dict(query))) if query else "")
