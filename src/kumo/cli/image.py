"""`kumo image ...`: register, list, show, download and delete images over Glance v2.

A client of the HTTP API like `openstack image ...`: every command authenticates with
clouds.yaml (`--os-cloud`, default `kumo`) and talks to the image endpoint in the
token's catalog. Uploads and downloads stream with a progress bar on stderr.

`kumo image build` / `lint` / `convert` live in other modules that add commands to
this same `app` (see the end of this file).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from kumo.cli.client import CLIError, CloudClient, CloudOption, cli_errors, connect
from kumo.cli.output import ColumnOption, FormatOption, OutputFormat, list_table, show_table
from kumo.cli.progress import progress_bar

app = typer.Typer(no_args_is_help=True)

DISK_FORMATS = ("ami", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")

# Fields of Glance's image schema; anything else is a custom property, which
# `openstack image show` folds into one `properties` row.
BASE_FIELDS = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
    "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk",
    "disk_format", "container_format", "created_at", "updated_at", "tags", "file", "schema",
    "self", "locations", "direct_url", "stores",
})
HIDDEN_FIELDS = frozenset({"self", "locations", "direct_url"})

LIST_COLUMNS = ("ID", "Name", "Status")
LONG_COLUMNS = (
    "ID", "Name", "Disk Format", "Container Format", "Size", "Checksum", "Status",
    "Visibility", "Protected", "Project", "Tags",
)
LONG_KEYS = (
    "id", "name", "disk_format", "container_format", "size", "checksum", "status",
    "visibility", "protected", "owner", "tags",
)


# Formats oslo's inspector names that Glance calls something else.
_DETECTED_AS = {"gpt": "raw"}


def detect_disk_format(path: Path) -> str:
    """The disk format of a local file, read by oslo.utils' format_inspector.

    No external program runs and only the headers are read. A file that looks like
    two formats at once is refused (except a hybrid ISO, which carries a GPT), and so
    is one that fails its format's safety checks: the server would refuse it anyway,
    and better before a long upload than after.
    """
    from oslo_utils.imageutils import format_inspector as fi

    # oslo logs each failed check as a warning; the CLI reports it once, below.
    logging.getLogger("oslo_utils.imageutils.format_inspector").setLevel(logging.ERROR)
    with open(path, "rb") as stream:
        # Fixed-size chunks: iterating a binary file would yield "lines" of any size.
        chunks = iter(lambda: stream.read(65536), b"")
        wrapper = fi.InspectWrapper(chunks)  # type: ignore[arg-type]
        try:
            while wrapper.formats is None and next(wrapper, b""):
                pass
            formats = wrapper.formats or []
        finally:
            wrapper.close()
    names = sorted(str(found) for found in formats)
    if names == ["gpt", "iso"]:
        formats = [found for found in formats if str(found) == "iso"]
    elif len(formats) > 1:
        raise CLIError(f"{path}: looks like several formats at once ({', '.join(names)}); "
                       "refused")
    if not formats:
        raise CLIError(f"{path}: could not tell its disk format; give --disk-format")
    found = formats[0]
    try:
        found.safety_check()
    except fi.SafetyCheckFailed as exc:
        reasons = "; ".join(f"{name}: {err}" for name, err in exc.failures.items())
        raise CLIError(f"{path}: fails the {found} safety check ({reasons})") from None
    detected = str(found)
    return _DETECTED_AS.get(detected, detected)


def _attr(finding: Any, *names: str) -> str:
    for name in names:
        value = finding.get(name) if isinstance(finding, dict) else getattr(finding, name, None)
        if value is not None:
            return str(getattr(value, "value", value))
    return ""


def run_lint(path: Path, *, force: bool) -> None:
    """Show `kumo.imagebuild.lint.lint_image(path)`'s findings; stop on errors unless force."""
    try:
        # Imported late: the linter is a separate part, and heavy to load.
        lint_image = importlib.import_module("kumo.imagebuild.lint").lint_image
    except (ImportError, AttributeError):
        raise CLIError(
            "--lint is not available: this kumo has no image linter (kumo.imagebuild.lint)"
        ) from None
    findings: Iterable[Any] = lint_image(path)
    rows = [[_attr(f, "severity", "level"), _attr(f, "rule", "id", "code"),
             _attr(f, "message"), _attr(f, "fix")] for f in findings]
    if not rows:
        typer.echo(f"Lint: {path} has no findings.", err=True)
        return
    list_table(("Severity", "Rule", "Message", "Fix"), rows, file=sys.stderr)
    errors = sum(1 for row in rows if row[0].lower() == "error")
    if errors and not force:
        raise CLIError(f"lint found {errors} error(s) in {path}; fix them or pass --force")


def image_view(image: dict[str, Any]) -> dict[str, Any]:
    """An image record as `openstack image show` lays it out."""
    view = {key: value for key, value in image.items()
            if key in BASE_FIELDS and key not in HIDDEN_FIELDS}
    properties = {key: value for key, value in image.items() if key not in BASE_FIELDS}
    if properties:
        view["properties"] = properties
    return view


def find_image(cloud: CloudClient, name_or_id: str) -> dict[str, Any]:
    """An image by id, else by exact name (hidden images too, like openstacksdk)."""
    try:
        return cloud.find("image", "/v2/images", name_or_id, kind="image", plural="images")
    except CLIError as exc:
        if exc.status != 404:
            raise
        not_found = exc
    # Glance lists hidden images only when asked to.
    body = cloud.json("image", "GET", "/v2/images",
                      params={"name": name_or_id, "os_hidden": "true"})
    matches = [image for image in body.get("images", []) if image.get("name") == name_or_id]
    if len(matches) == 1:
        return dict(matches[0])
    if matches:
        raise CLIError(f"More than one image exists with the name '{name_or_id}'; use its ID.")
    raise not_found


READ_PROPERTIES = ("os_distro", "os_version", "os_admin_user")


def _with_read_properties(cloud: Any, image_id: str, given: dict[str, str]) -> dict[str, Any]:
    """The stored image, after waiting briefly for the properties kumo reads from inside it."""
    image: dict[str, Any] = cloud.json("image", "GET", f"/v2/images/{image_id}")
    if image.get("disk_format") not in ("raw", "qcow2") or set(READ_PROPERTIES) <= set(given):
        return image
    deadline = time.monotonic() + 3
    while not any(key in image for key in READ_PROPERTIES) and time.monotonic() < deadline:
        time.sleep(0.2)
        image = cloud.json("image", "GET", f"/v2/images/{image_id}")
    read = {k: image[k] for k in READ_PROPERTIES if k in image and k not in given}
    if read:
        listed = ", ".join(f"{key}={value}" for key, value in sorted(read.items()))
        typer.echo(f"Read from the image: {listed}", err=True)
    return image


def parse_properties(pairs: list[str]) -> dict[str, str]:
    properties = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--property")
        if key in BASE_FIELDS:
            raise typer.BadParameter(
                f"{key!r} is an image field, not a property; use its own option",
                param_hint="--property",
            )
        properties[key] = value
    return properties


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(allowed)}", param_hint=option
        )
    return value


def delete_quietly(cloud: CloudClient, image_id: str, protected: bool) -> None:
    """Undo a failed create: remove the image record (and unprotect it first)."""
    try:
        if protected:
            cloud.request(
                "image", "PATCH", f"/v2/images/{image_id}",
                content=b'[{"op": "replace", "path": "/protected", "value": false}]',
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )
        cloud.request("image", "DELETE", f"/v2/images/{image_id}")
        typer.echo(f"Deleted the unfinished image {image_id}.", err=True)
    except (CLIError, httpx.HTTPError) as exc:
        typer.echo(f"kumo: could not delete the unfinished image {image_id}: {exc}", err=True)


def upload_image_file(cloud: CloudClient, image_id: str, path: Path, name: str) -> None:
    """PUT the file's bytes to the image, streaming, with a progress bar."""
    size = path.stat().st_size
    with progress_bar(f"Uploading {name}", total=size) as bar:
        try:
            cloud.upload("image", "PUT", f"/v2/images/{image_id}/file", path,
                         progress=bar.advance)
        except httpx.TransportError as exc:
            # The server may refuse mid-stream (e.g. wrong format) and close the
            # connection before we read its answer; report what the image says.
            raise CLIError(f"upload of {path} was interrupted: {exc}") from None


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the new image.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Upload this file as the image's data (streamed)."),
    ] = None,
    disk_format: Annotated[
        str | None,
        typer.Option(help="Disk format (detected from --file when not given)."),
    ] = None,
    container_format: Annotated[str, typer.Option(help="Container format.")] = "bare",
    visibility: Annotated[
        str | None, typer.Option(help="public, private, shared or community.")
    ] = None,
    prop: Annotated[
        list[str] | None,
        typer.Option("--property", help="Custom property KEY=VALUE (repeat for more)."),
    ] = None,
    min_disk: Annotated[int | None, typer.Option(help="Minimum disk size (GiB).")] = None,
    min_ram: Annotated[int | None, typer.Option(help="Minimum RAM (MiB).")] = None,
    protected: Annotated[
        bool | None, typer.Option("--protected/--unprotected", help="Prevent deletion.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag (repeat for more).")
    ] = None,
    lint: Annotated[
        bool, typer.Option("--lint", help="Lint the file before uploading it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Upload even if --lint finds errors.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Create an image and upload its data, like `openstack image create`."""
    with cli_errors():
        _choice(disk_format, DISK_FORMATS, "--disk-format")
        _choice(container_format, CONTAINER_FORMATS, "--container-format")
        _choice(visibility, VISIBILITIES, "--visibility")
        properties = parse_properties(prop or [])
        if file is not None:
            if not file.is_file():
                raise CLIError(f"{file}: no such file")
            if lint:
                run_lint(file, force=force)
            if disk_format is None:
                disk_format = detect_disk_format(file)
                typer.echo(f"Detected disk format: {disk_format}", err=True)
        elif lint:
            raise CLIError("--lint needs --file")
        body: dict[str, Any] = {
            "name": name,
            "disk_format": disk_format or "raw",
            "container_format": container_format,
            **properties,
        }
        optional = {"visibility": visibility, "min_disk": min_disk, "min_ram": min_ram,
                    "protected": protected, "tags": tag}
        body.update({key: value for key, value in optional.items() if value is not None})
        with connect(os_cloud) as cloud:
            image = cloud.json("image", "POST", "/v2/images", json=body)
            if file is not None:
                try:
                    upload_image_file(cloud, image["id"], file, name)
                except BaseException:
                    delete_quietly(cloud, image["id"], bool(protected))
                    raise
                # kumo reads os_distro/os_version/os_admin_user from the image once it is
                # stored (for every client); a moment later they show up here.
                image = _with_read_properties(cloud, image["id"], properties)
        show_table(image_view(image), fmt, column)


def _list_params(
    name: str | None, status: str | None, visibility: str | None, tag: list[str] | None,
    page: int,
) -> list[tuple[str, str]]:
    params = [("limit", str(page))]
    for key, value in (("name", name), ("status", status), ("visibility", visibility)):
        if value is not None:
            params.append((key, value))
    params += [("tag", value) for value in tag or []]
    return params


def list_images(
    cloud: CloudClient, params: list[tuple[str, str]], limit: int | None
) -> list[dict[str, Any]]:
    """Every image the filters match, following Glance's `next` links."""
    images: list[dict[str, Any]] = []
    body = cloud.json("image", "GET", "/v2/images", params=params)
    while True:
        images += body.get("images", [])
        if limit is not None and len(images) >= limit:
            return images[:limit]
        following = body.get("next")
        if not following or not body.get("images"):
            return images
        body = cloud.json("image", "GET", following)


@app.command("list")
def list_(
    long: Annotated[bool, typer.Option("--long", help="Show more columns.")] = False,
    name: Annotated[str | None, typer.Option(help="Only images with this name.")] = None,
    status: Annotated[str | None, typer.Option(help="Only images in this status.")] = None,
    visibility: Annotated[str | None, typer.Option(help="Only this visibility.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only images with this tag.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many images.", min=1)] = None,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """List images, like `openstack image list`."""
    with cli_errors():
        _choice(visibility, VISIBILITIES, "--visibility")
        page = min(limit or 1000, 1000)
        with connect(os_cloud) as cloud:
            images = list_images(cloud, _list_params(name, status, visibility, tag, page), limit)
        if long:
            rows = [[image.get(key) for key in LONG_KEYS] for image in images]
            list_table(LONG_COLUMNS, rows, fmt, column)
        else:
            rows = [[image.get("id"), image.get("name"), image.get("status")]
                    for image in images]
            list_table(LIST_COLUMNS, rows, fmt, column)


@app.command("show")
def show(
    image: Annotated[str, typer.Argument(help="Image name or ID.")],
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Show one image's fields, like `openstack image show`."""
    with cli_errors(), connect(os_cloud) as cloud:
        found = find_image(cloud, image)
        show_table(image_view(found), fmt, column)


def verify_download(image: dict[str, Any], response: httpx.Response,
                    digests: dict[str, str]) -> None:
    """Refuse data whose hashes differ from the image record (multihash, then md5)."""
    algo, expected = image.get("os_hash_algo"), image.get("os_hash_value")
    checks: list[tuple[str, str, str]] = []
    if algo and expected and algo in digests:
        checks.append((algo, str(expected), digests[algo]))
    if image.get("checksum"):
        checks.append(("md5", str(image["checksum"]), digests["md5"]))
    header_md5 = response.headers.get("Content-MD5")
    if header_md5 and header_md5 != image.get("checksum"):
        checks.append(("md5 (Content-MD5)", header_md5, digests["md5"]))
    for label, want, got in checks:
        if want.lower() != got.lower():
            raise CLIError(
                f"downloaded data of image {image['id']} does not match its {label} "
                f"(expected {want}, got {got}); the file was not kept"
            )


@app.command("download")
def download(
    image: Annotated[str, typer.Argument(help="Image name or ID.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", "--file", help="Write the image's data here.")
    ],
    os_cloud: CloudOption = None,
) -> None:
    """Download an image's data, verifying its hashes (`openstack image save`)."""
    with cli_errors(), connect(os_cloud) as cloud:
        found = find_image(cloud, image)
        if found.get("status") != "active":
            raise CLIError(
                f"image {found['id']} is {found.get('status')}, not active: it has no data"
            )
        if output.is_dir():
            raise CLIError(f"{output} is a directory; give a file name")
        if not output.parent.resolve().is_dir():
            raise CLIError(f"{output.parent}: no such directory")
        algorithms = ["md5"]
        algo = found.get("os_hash_algo")
        if algo and algo != "md5":
            algorithms.append(str(algo))
        with progress_bar(f"Downloading {found.get('name') or found['id']}",
                          total=found.get("size")) as bar:

            def on_start(response: httpx.Response) -> None:
                if response.status_code == 204:
                    raise CLIError(f"image {found['id']} has no data")
                length = response.headers.get("Content-Length")
                if length is not None:
                    bar.set_total(int(length))

            result = cloud.download(
                "image", f"/v2/images/{found['id']}/file", output, progress=bar.advance,
                on_start=on_start, hash_algorithms=tuple(algorithms),
                verify=lambda response, digests: verify_download(found, response, digests),
            )
        typer.echo(f"Saved {result.size} bytes to {result.path}", err=True)


@app.command("delete")
def delete(
    images: Annotated[list[str], typer.Argument(help="Image names or IDs.")],
    os_cloud: CloudOption = None,
) -> None:
    """Delete images; go on past failures and report them (`openstack image delete`)."""
    with cli_errors(), connect(os_cloud) as cloud:
        failed = 0
        for name_or_id in images:
            try:
                found = find_image(cloud, name_or_id)
                cloud.request("image", "DELETE", f"/v2/images/{found['id']}")
            except CLIError as exc:
                failed += 1
                typer.echo(f"kumo: failed to delete image {name_or_id!r}: {exc.message}",
                           err=True)
        if failed:
            raise CLIError(f"failed to delete {failed} of {len(images)} images")


def _register_extensions() -> None:
    """Let other modules add `kumo image` subcommands (build, lint, convert).

    Such a module does `from kumo.cli.image import app` and decorates its commands
    with `@app.command("build")`; listing it here is all the wiring it needs.
    """
    for module in ("kumo.cli.image_build", "kumo.cli.image_lint"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


_register_extensions()
