"""`GET /v2/images`: Glance's filters, sorting and marker paging, all in SQL.

Visibility and membership, every filter, the ordering (with the id as the last,
unique key) and marker paging (a seek past the marker's sort values) are one query
that reads one page of rows, whatever the number of images; the indexes it needs
are in `kumo.image.models`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, RowMapping, and_, false, or_, select, tuple_
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.errors import BadRequest
from kumo.image import access
from kumo.image.lifecycle import DELETED, MEMBER_STATUSES, VISIBILITIES
from kumo.image.models import Image, ImageMember, ImageProperty, ImageTag

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
    # Stored as naive UTC (as Glance's database keeps them).
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"Invalid value for {name}: {value!r} (expected true or false)")


PLAIN_COLUMNS = ("name", "owner", "status", "disk_format", "container_format", "id", "checksum",
                 "os_hash_value")
OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "eq": lambda c, v: c == v,
    "neq": lambda c, v: c != v,
}


def _filter(name: str, raw: str) -> ColumnElement[bool]:
    """The SQL condition for one `name=value` filter (with `in:` and the date operators)."""
    if name in ("size_min", "size_max"):
        bound = _int(name, raw)
        return Image.size >= bound if name == "size_min" else Image.size <= bound
    if name in ("created_at", "updated_at"):
        op, sep, rest = raw.partition(":")
        if not sep or op not in OPERATORS:
            raise BadRequest(
                f"Invalid {name} filter {raw!r}: use gt:, gte:, lt:, lte:, eq: or neq:"
            )
        return OPERATORS[op](getattr(Image, name), _parse_time(rest))
    if name == "tag":
        return Image.id.in_(select(ImageTag.image_id).where(ImageTag.value == raw))
    if name in ("protected", "os_hidden"):
        return getattr(Image, name).is_(_bool(name, raw))  # type: ignore[no-any-return]
    if name in ("min_disk", "min_ram"):
        return getattr(Image, name) == _int(name, raw)  # type: ignore[no-any-return]
    values = raw[3:].split(",") if raw.startswith("in:") else [raw]
    if name in PLAIN_COLUMNS:
        return getattr(Image, name).in_(values)  # type: ignore[no-any-return]
    return Image.id.in_(select(ImageProperty.image_id).where(
        ImageProperty.name == name, ImageProperty.value.in_(values)))


def _member_of(context: RequestContext, member_status: str | None) -> ColumnElement[bool]:
    """Shared with the caller's project (with that membership status, unless None/all).

    A correlated EXISTS (the (image_id, member) index answers it per row): the list
    stops after a page, so only the rows it walks are looked up, however many images
    are shared with the project.
    """
    members = select(ImageMember.id).where(ImageMember.image_id == Image.id,
                                           ImageMember.member == context.project_id)
    if member_status not in (None, "all"):
        members = members.where(ImageMember.status == member_status)
    return members.exists()


def _visibility(context: RequestContext, visibility: str | None,
                member_status: str) -> ColumnElement[bool] | None:
    """Glance's listing rules (`kumo.image.access`) as one SQL condition; None: all rows."""
    own = Image.owner == context.project_id
    if visibility is None or visibility == "all":
        if context.is_admin:
            return None
        listed = or_(own, Image.visibility == "public",
                     and_(Image.visibility == "shared", _member_of(context, member_status)))
        return or_(listed, Image.visibility == "community") if visibility == "all" else listed
    chosen = Image.visibility == visibility
    if context.is_admin:
        return chosen
    if visibility in ("public", "community"):
        return chosen
    if visibility == "shared":
        return and_(chosen, or_(own, _member_of(context, member_status)))
    return and_(chosen, own)  # private


def _order(key: str, direction: str) -> ColumnElement[Any]:
    # NULLs first going up and last going down, on every database (SQLite's own order).
    column = getattr(Image, key)
    ordered: ColumnElement[Any] = (column.asc().nulls_first() if direction == "asc"
                                   else column.desc().nulls_last())
    return ordered


NOT_NULL = frozenset({"id", "created_at", "updated_at", "status", "visibility", "protected",
                      "os_hidden", "min_disk", "min_ram"})


def _after(marker: Image, ordering: list[tuple[str, str]]) -> ColumnElement[bool]:
    """Rows that come after `marker` in `ordering` (whose last key is the unique id)."""
    if {key for key, _ in ordering} <= NOT_NULL and len({d for _, d in ordering}) == 1:
        # One direction, no NULLs: a row-value comparison, which the index seeks to.
        columns = tuple_(*(getattr(Image, key) for key, _ in ordering))
        values = tuple_(*(getattr(marker, key) for key, _ in ordering))
        return columns > values if ordering[0][1] == "asc" else columns < values
    alternatives: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for key, direction in ordering:
        column, value = getattr(Image, key), getattr(marker, key)
        if value is None:
            beyond = column.is_not(None) if direction == "asc" else false()
            same = column.is_(None)
        else:
            beyond = column > value if direction == "asc" else or_(column < value,
                                                                     column.is_(None))
            same = column == value
        alternatives.append(and_(*equal, beyond))
        equal.append(same)
    return or_(*alternatives)


def _page(
    session: Session, context: RequestContext, query: ListQuery
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[Any]]]:
    """The conditions and the ordering of the page `query` asks for: visibility, every
    filter, and with a marker a seek past the marker image's sort values."""
    visibility: str | None = None
    conditions: list[ColumnElement[bool]] = [Image.status != DELETED]
    os_hidden_filter = False
    for name, value in query.filters:
        if name == "visibility":
            if value not in (*VISIBILITIES, "all"):
                raise BadRequest(f"Invalid visibility value {value!r}")
            visibility = value
            continue
        if name == "os_hidden":
            os_hidden_filter = True
        conditions.append(_filter(name, value))
    if not os_hidden_filter:
        # Hidden images are left out unless asked for (os_hidden=true).
        conditions.append(Image.os_hidden.is_(False))
    visible = _visibility(context, visibility, query.member_status)
    if visible is not None:
        conditions.append(visible)
    ordering = [*query.sort]
    if not any(key == "id" for key, _ in ordering):
        ordering.append(("id", ordering[-1][1] if ordering else "desc"))
    if query.marker is not None:
        marker = session.get(Image, query.marker)
        if marker is None or marker.status == DELETED or not access.can_read(context, marker):
            raise BadRequest(f"marker {query.marker!r} not found among the images you can list")
        conditions.append(_after(marker, ordering))
    return conditions, [_order(key, direction) for key, direction in ordering]


def run_query(
    session: Session, context: RequestContext, query: ListQuery
) -> tuple[list[Image], str | None]:
    """The page of images the caller may list, and the id to put in `next` (or None).

    One SQL query with the filters, visibility and ordering, limited to the page
    plus one row; a marker is a seek past the marker image's sort values, so a deep
    page costs what the first one does.
    """
    conditions, order = _page(session, context, query)
    rows = list(session.scalars(
        select(Image).where(*conditions).order_by(*order).limit(query.limit + 1)))
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return page, (page[-1].id if more and page else None)


@dataclass(frozen=True)
class Listed:
    """One image of a page as plain values: its row (`schemas.COLUMNS`), properties, tags."""

    columns: RowMapping
    properties: dict[str, str]
    tags: list[str]


def list_page(
    session: Session, context: RequestContext, query: ListQuery
) -> tuple[list[Listed], str | None]:
    """`run_query`'s page read as rows, not ORM objects (`GET /v2/images` only shows it):
    three queries, the page and its pages' properties and tags, and no members."""
    conditions, order = _page(session, context, query)
    rows = session.execute(select(*Image.__table__.columns).where(*conditions)
                           .order_by(*order).limit(query.limit + 1)).mappings().all()
    page = [Listed(row, {}, []) for row in rows[: query.limit]]
    by_id = {image.columns["id"]: image for image in page}
    if by_id:
        # in the order they were set, as the ORM's collection of them has it
        for image_id, name, value in session.execute(
                select(ImageProperty.image_id, ImageProperty.name, ImageProperty.value)
                .where(ImageProperty.image_id.in_(by_id)).order_by(ImageProperty.id)):
            by_id[image_id].properties[name] = value
        for image_id, tag in session.execute(
                select(ImageTag.image_id, ImageTag.value).where(ImageTag.image_id.in_(by_id))):
            by_id[image_id].tags.append(tag)
    more = len(rows) > query.limit
    return page, (page[-1].columns["id"] if more and page else None)


def next_link(query: ListQuery, marker: str) -> str:
    params: list[tuple[str, str]] = [(k, v) for k, v in query.raw if k != "marker"]
    params.append(("marker", marker))
    if not any(k == "limit" for k, _ in params):
        params.append(("limit", str(query.limit)))
    return "/v2/images?" + urlencode(params)


def first_link(query: Mapping[str, str] | None = None) -> str:
    return "/v2/images" + (("?" + urlencode(dict(query))) if query else "")
