"""kumo.cli.output: tables and -f json/value/yaml shaped like the openstack CLI's."""

from __future__ import annotations

import io
import json

import pytest
import typer
import yaml

from kumo.cli.output import OutputFormat, format_value, human_size, list_table, show_table

IMAGE = {
    "name": "CirrOS 0.3.3",
    "id": "d1b69800-3b30-42b2-a0b4-3c4a97bcdb1b",
    "checksum": "64d7c1cd2b6f60c92c14662941cb7913",
    "size": 13167616,
    "protected": False,
    "tags": ["cirros", "test"],
    "properties": {"os_distro": "cirros", "hw_rng_model": "virtio"},
    "owner": None,
}


def render(fn: object, *args: object, **kwargs: object) -> str:
    out = io.StringIO()
    fn(*args, file=out, **kwargs)  # type: ignore[operator]
    return out.getvalue()


def test_show_table_is_field_value_sorted_by_field() -> None:
    text = render(show_table, IMAGE)
    lines = text.splitlines()
    assert lines[0].startswith("+") and lines[0].endswith("+")
    assert lines[1].split("|")[1].strip() == "Field"
    assert lines[1].split("|")[2].strip() == "Value"
    fields = [line.split("|")[1].strip() for line in lines[3:-1]]
    assert fields == sorted(IMAGE)
    row = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in lines[3:-1]}
    assert row["name"] == "CirrOS 0.3.3"
    assert row["size"] == "13167616"
    assert row["protected"] == "False"
    assert row["owner"] == "None"
    assert row["tags"] == "cirros, test"
    assert row["properties"] == "hw_rng_model='virtio', os_distro='cirros'"


def test_piped_tables_never_wrap_long_values() -> None:
    long_value = "x" * 500
    text = render(show_table, {"description": long_value})
    assert long_value in text


def test_show_json_keeps_real_types() -> None:
    data = json.loads(render(show_table, IMAGE, OutputFormat.json))
    assert data == IMAGE


def test_show_value_with_columns_prints_just_the_values() -> None:
    assert render(show_table, IMAGE, "value", ["id"]) == IMAGE["id"] + "\n"
    assert render(show_table, IMAGE, "value", ["name", "size"]) == "CirrOS 0.3.3\n13167616\n"


def test_show_yaml() -> None:
    assert yaml.safe_load(render(show_table, IMAGE, "yaml"))["tags"] == ["cirros", "test"]


def test_unknown_column_is_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="no column 'nope'"):
        render(show_table, IMAGE, "table", ["nope"])


def test_list_table_rows_and_header() -> None:
    rows = [["id-1", "alpha", "active"], ["id-2", "beta", "queued"]]
    text = render(list_table, ["ID", "Name", "Status"], rows)
    lines = text.splitlines()
    assert [cell.strip() for cell in lines[1].split("|")[1:-1]] == ["ID", "Name", "Status"]
    body = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[3:-1]]
    assert body == rows


def test_list_json_value_and_columns() -> None:
    rows = [["id-1", "alpha", "active"], ["id-2", "beta", None]]
    data = json.loads(render(list_table, ["ID", "Name", "Status"], rows, "json"))
    assert data == [{"ID": "id-1", "Name": "alpha", "Status": "active"},
                    {"ID": "id-2", "Name": "beta", "Status": None}]
    # -c is matched case-insensitively, like users type it
    assert render(list_table, ["ID", "Name", "Status"], rows, "value", ["id"]) == "id-1\nid-2\n"
    assert render(list_table, ["ID", "Name"], [], "value") == ""
    assert json.loads(render(list_table, ["ID", "Name"], [], "json")) == []


def test_format_value_and_human_size() -> None:
    assert format_value(True) == "True"
    assert format_value([]) == ""
    assert format_value({"b": 1, "a": [1, 2]}) == "a='1, 2', b='1'"
    assert human_size(512) == "512 B"
    assert human_size(3 * 1024 * 1024 + 512 * 1024) == "3.5 MiB"
    assert human_size(None) == "?"
