"""Tables and machine-readable output shaped like the `openstack` CLI's.

- `show_table(record)`: one resource as a two-column Field | Value table sorted by
  field, as `openstack image show` prints it (the table in seed 001).
- `list_table(columns, rows)`: many resources, one row each (`openstack image list`).

Both honour `--format table|json|value|yaml` and `--column/-c` the way cliff does:
`-f value -c id` prints just the id, for shell scripts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import IO, Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    value = "value"
    yaml = "yaml"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output format.", case_sensitive=False),
]
ColumnOption = Annotated[
    list[str] | None,
    typer.Option("--column", "-c", help="Show only this column (repeat for more)."),
]


def format_value(value: Any) -> str:
    """A value as `openstack` prints it in a table: lists joined, dicts as k='v'."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}='{format_value(val)}'" for key, val in sorted(value.items()))
    if isinstance(value, (list, tuple, set)):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def console(file: IO[str] | None = None) -> Console:
    """A console that fits the terminal, or never wraps when output is a pipe or file."""
    out = file or sys.stdout
    if out.isatty():
        return Console(file=out)
    # Piped output is for grep/awk: one record per line, however long.
    return Console(file=out, width=100_000, no_color=True, highlight=False)


def _select(columns: Sequence[str], wanted: Sequence[str] | None) -> list[int]:
    """Indexes of the wanted columns (matched case-insensitively), in the order asked."""
    if not wanted:
        return list(range(len(columns)))
    lowered = [column.lower() for column in columns]
    indexes = []
    for name in wanted:
        if name.lower() not in lowered:
            raise typer.BadParameter(
                f"no column {name!r}; choose from {', '.join(columns)}", param_hint="--column"
            )
        indexes.append(lowered.index(name.lower()))
    return indexes


def _emit(text: str, file: IO[str] | None) -> None:
    out = file or sys.stdout
    out.write(text if text.endswith("\n") else text + "\n")
    out.flush()


def show_table(
    record: Mapping[str, Any],
    fmt: OutputFormat = OutputFormat.table,
    columns: Sequence[str] | None = None,
    *,
    file: IO[str] | None = None,
) -> None:
    """Print one resource: Field | Value rows sorted by field (or json/value/yaml)."""
    fmt = OutputFormat(fmt)
    fields = sorted(record)
    picked = [fields[i] for i in _select(fields, columns)]
    if fmt is OutputFormat.json:
        _emit(json.dumps({key: record[key] for key in picked}, indent=2, default=str), file)
    elif fmt is OutputFormat.yaml:
        data = {key: record[key] for key in picked}
        _emit(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=True), file)
    elif fmt is OutputFormat.value:
        _emit("\n".join(format_value(record[key]) for key in picked), file)
    else:
        table = Table("Field", "Value", box=box.ASCII2, header_style="bold", highlight=False)
        for key in picked:
            table.add_row(key, format_value(record[key]))
        console(file).print(table)


def list_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: OutputFormat = OutputFormat.table,
    selected: Sequence[str] | None = None,
    *,
    file: IO[str] | None = None,
) -> None:
    """Print many resources, one row each, under `columns` (or json/value/yaml)."""
    fmt = OutputFormat(fmt)
    indexes = _select(columns, selected)
    names = [columns[i] for i in indexes]
    picked = [[row[i] for i in indexes] for row in rows]
    if fmt is OutputFormat.json:
        _emit(json.dumps([dict(zip(names, row, strict=True)) for row in picked], indent=2,
                         default=str), file)
    elif fmt is OutputFormat.yaml:
        data = [dict(zip(names, row, strict=True)) for row in picked]
        _emit(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False)
              if data else "[]", file)
    elif fmt is OutputFormat.value:
        lines = [" ".join(format_value(value) for value in row) for row in picked]
        if lines:
            _emit("\n".join(lines), file)
    else:
        table = Table(*names, box=box.ASCII2, header_style="bold", highlight=False)
        for row in picked:
            table.add_row(*(format_value(value) for value in row))
        console(file).print(table)


def human_size(size: int | None) -> str:
    """Bytes as a short human figure (1.5 MiB); for messages, not for tables."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
