"""Neutron's list queries: attribute filters, `fields=`, sorting and marker paging.

`GET /v2.0/ports?device_id=X&fixed_ips=ip_address=10.0.0.5&fields=id` is how the
clients find things. A filter is an attribute name with one or more values (any of
them matches); booleans take `true`/`false`; `fixed_ips=key=value` looks inside a
port's fixed IPs (`ip_address`, `subnet_id`, `ip_address_substr`). Filters on
attributes the resource does not have match nothing rather than everything.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams

from kumo.network.errors import InvalidInput, NeutronBadRequest

PAGING = frozenset({"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse",
                    "tags-any", "not-tags", "not-tags-any", "dry-run"})


def _as_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


def _matches(actual: Any, values: list[str]) -> bool:
    if isinstance(actual, bool):
        return any(_as_bool(v) is actual for v in values)
    if isinstance(actual, list):
        return all(v in [str(a) for a in actual] for v in values)
    if actual is None:
        return any(v in ("", "None", "null") for v in values)
    return str(actual) in values


def _fixed_ip_matches(fixed_ips: list[dict[str, str]], conditions: list[str]) -> bool:
    for condition in conditions:
        key, sep, value = condition.partition("=")
        if not sep or key not in ("ip_address", "subnet_id", "ip_address_substr"):
            raise InvalidInput(f"Invalid fixed_ips filter '{condition}': use ip_address=, "
                               "subnet_id= or ip_address_substr=")
        if key == "ip_address_substr":
            found = any(value in ip["ip_address"] for ip in fixed_ips)
        else:
            found = any(ip.get(key) == value for ip in fixed_ips)
        if not found:
            return False
    return True


def filtered(query: QueryParams, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items whose attributes match every filter of the query string."""
    for key in dict.fromkeys(query.keys()):
        if key in PAGING:
            continue
        values = query.getlist(key)
        if key == "fixed_ips":
            items = [i for i in items if _fixed_ip_matches(i.get("fixed_ips", []), values)]
        else:
            items = [i for i in items if key in i and _matches(i[key], values)]
    return items


def selected(query: QueryParams, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutron's `fields=a&fields=b`: only those attributes."""
    fields = [f for value in query.getlist("fields") for f in value.split(",") if f]
    if not fields:
        return items
    return [{k: v for k, v in item.items() if k in fields} for item in items]


def _sorted(query: QueryParams, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = query.getlist("sort_key")
    dirs = query.getlist("sort_dir")
    if len(dirs) > len(keys) or any(d not in ("asc", "desc") for d in dirs):
        raise NeutronBadRequest("The number of sort_keys and sort_dirs must be same, and "
                                "sort_dir is asc or desc")
    for index in reversed(range(len(keys))):
        key = keys[index]
        reverse = index < len(dirs) and dirs[index] == "desc"
        items = sorted(items, key=lambda i: (i.get(key) is None, str(i.get(key, ""))),
                       reverse=reverse)
    return items


def listing(query: QueryParams, items: list[dict[str, Any]], collection: str,
            url: str) -> dict[str, Any]:
    """The whole answer of a list call: filtered, sorted, paged, fields selected."""
    items = _sorted(query, filtered(query, items))
    body: dict[str, Any] = {}
    marker = query.get("marker")
    if marker:
        ids = [i.get("id") for i in items]
        if marker not in ids:
            raise NeutronBadRequest(f"Marker {marker} could not be found")
        items = items[ids.index(marker) + 1:]
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise InvalidInput(f"'{query['limit']}' is not an integer") from None
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            body[f"{collection}_links"] = [
                {"rel": "next", "href": f"{url}?limit={limit}&marker={items[-1]['id']}"}]
    body[collection] = selected(query, items)
    return body
