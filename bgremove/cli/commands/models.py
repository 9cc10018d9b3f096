"""`bgremove models list | pull`.

Only typer and the registry are imported at module level: `bgremove --help` stays instant. Rich,
httpx and onnxruntime are imported inside the commands that use them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bgremove import models as registry
from bgremove.cli.commands import fail

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

models_app = typer.Typer(
    help="List the models bgremove can use, and download more.\n\nExample: bgremove models list",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _mib(size: float) -> str:
    return f"{size:.1f} MiB" if size < 10 else f"{size:.0f} MiB"


def model_rows() -> list[dict[str, Any]]:
    """Every model `--model` can name, with where it is and what it is."""
    rows = []
    for info in registry.KNOWN.values():
        path: Path | None
        if info.name == registry.BUNDLED:
            status, path = "bundled", registry.BUNDLED_PATH
        else:
            path = registry.find_downloaded(info.name)
            status = "downloaded" if path else "downloadable"
        rows.append({
            "name": info.name,
            "status": status,
            "path": str(path) if path else None,
            "size_bytes": path.stat().st_size if path else None,
            "download_mib": info.size_mb,
            "input_size": info.input_size,
            "licence": info.licence,
            "commercial_use": not info.restriction,
            "restriction": info.restriction or None,
            "checksum": info.checksum,
            "url": registry.asset_url(info.asset),
            "note": info.note,
            "architecture": info.architecture,
        })
    for name, path in registry.custom_models().items():
        architecture, note = custom_architecture(path)
        rows.append({
            "name": name, "status": "custom", "path": str(path), "size_bytes": path.stat().st_size,
            "download_mib": None, "input_size": None, "licence": None, "commercial_use": None,
            "restriction": None, "checksum": None, "url": None,
            "note": note, "architecture": architecture,
        })
    return rows


def custom_architecture(path) -> tuple[str | None, str]:
    """A model file's architecture as its graph tells it (None: it does not), and why."""
    from bgremove.errors import ModelUnavailable
    from bgremove.models.architectures import recognise_file

    try:
        found = recognise_file(path)
    except ModelUnavailable as exc:
        return None, str(exc)
    if found.architecture is None:
        return None, f"your own model; run it with --model-type: {found.reason}"
    return found.architecture.type.value, f"your own model: {found.reason}"


def _providers() -> dict[str, Any]:
    """The installed onnxruntime providers, and the one `--device auto` picks."""
    from bgremove.devices import CPU, installed, place

    return {"installed": installed(), "auto": place("auto").accelerator or CPU}


def _precision(providers: dict[str, Any]) -> dict[str, str]:
    """The build of the bundled model `--precision auto` runs here (with `--device auto`), and
    why: the same function decides it when a session loads (bgremove/precision.py)."""
    from bgremove.cli.exits import in_flags
    from bgremove.devices import CPU
    from bgremove.precision import choose, reason

    on_cpu = providers["auto"] == CPU
    return {"auto": choose("auto", on_cpu=on_cpu).value,
            "why": in_flags(reason(on_cpu=on_cpu))}


@models_app.command(
    "list",
    help="List every model: bundled, downloaded or downloadable.\n\n"
    "With its path, size, input resolution, architecture and licence.\n\nExample: bgremove models "
    "list --json",
)
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    rows = model_rows()
    providers = _providers()
    precision = _precision(providers)
    if as_json:
        document = {"cache": str(registry.cache_dir()), "mirror": registry.mirror(),
                    "providers": providers, "precision": precision,
                    "models": rows}
        typer.echo(json.dumps(document, indent=2))
        return

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bgremove.devices import short

    table = Table(title="bgremove models", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("input", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("licence", min_width=10)
    table.add_column("notes / path", overflow="fold", min_width=12)
    for row in rows:
        if row["size_bytes"] is not None:
            size = _mib(row["size_bytes"] / 2**20)
        else:
            size = "~" + _mib(row["download_mib"])
        side = row["input_size"]
        licence = Text(row["licence"] or "-")
        if row["restriction"]:
            licence = Text(f"{row['licence']} (non-commercial)", style="bold red")
        where = row["path"] if row["status"] in ("downloaded", "custom") else row["note"]
        style = {"bundled": "green", "downloaded": "green", "custom": "cyan"}.get(row["status"], "")
        table.add_row(row["name"], Text(row["status"], style=style), size,
                      f"{side}px" if side else "-", row["architecture"] or "?", licence, where)
    console = Console(highlight=False)
    if not console.is_terminal:  # piped: no terminal width to fit, so do not fold the names
        console.width = max(console.width, 132)
    console.print(table)
    for row in rows:
        if row["restriction"]:
            console.print(f"{row['name']}: {row['licence']}, {row['restriction']}.", style="red",
                          soft_wrap=True)
        if row["status"] == "custom" and row["architecture"] is None:
            console.print(f"{row['name']}: {row['note']}", soft_wrap=True, markup=False)
    console.print(f"cache: {registry.cache_dir()}   downloads from: {registry.mirror()}",
                  soft_wrap=True, markup=False)
    installed = ", ".join(providers["installed"]) or "none"
    console.print(f"onnxruntime providers: {installed}; --device auto runs on "
                  f"{short(providers['auto'])}", soft_wrap=True, markup=False)
    console.print(f"--precision auto runs {registry.BUNDLED} in {precision['why']}",
                  soft_wrap=True, markup=False)
    console.print("Download one with: bgremove models pull NAME", markup=False)


@models_app.command(
    "pull",
    help="Download a model into the model cache, verifying its checksum. A custom model can be "
    "pulled from a mirror by name with --checksum.\n\n"
    "Example: bgremove models pull isnet-general-use",
)
def pull(
    name: Annotated[str, typer.Argument(help="The model's name (see `bgremove models list`).",
                                        show_default=False)],
    mirror: Annotated[str | None, typer.Option(
        metavar="URL", help=f"Base URL to download from, e.g. a company mirror of rembg's release "
        f"files [env: {registry.MIRROR_ENV}; default: {registry.RELEASES}]",
        show_default=False)] = None,
    checksum: Annotated[str | None, typer.Option(
        metavar="ALG:HEX", help="sha256:HEX or md5:HEX of a custom model served by your mirror "
        "(the checksums of known models are built in).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Download again even when a verified copy is present.")] = False,
) -> None:
    from bgremove.models.pull import Checksum, DownloadFailed, download

    try:
        expected_given = Checksum.parse(checksum) if checksum else None
    except ValueError as exc:
        fail(str(exc), 2)
    if name == registry.BUNDLED:
        typer.echo(f"{name} is bundled with bgremove ({registry.BUNDLED_PATH}); nothing to "
                   f"download.", err=True)
        typer.echo(str(registry.BUNDLED_PATH))
        return
    info = registry.KNOWN.get(name)
    if info is not None:
        expected = Checksum.parse(info.checksum)
        if expected_given is not None and expected_given != expected:
            fail(f"the checksum of {name} is built in ({expected}); --checksum is for custom "
                  f"models served by a mirror", 2)
        asset, approx = info.asset, f" (~{_mib(info.size_mb)})"
    elif (registry.is_custom_name(name) and expected_given is not None
          and registry.mirror(mirror) != registry.RELEASES):
        # your own model on your own mirror: fetched as <mirror>/<name>.onnx, pinned by --checksum
        expected, asset, approx = expected_given, f"{name}.onnx", ""
    else:
        fail(f"unknown model {name!r}. {registry.available_text()} A custom model can be pulled "
              f"from your mirror by name with --mirror URL (or {registry.MIRROR_ENV}) and "
              f"--checksum sha256:HEX; it is fetched as URL/{name}.onnx.", 2)

    dest = registry.cached_path(name)
    present = registry.find_downloaded(name)
    if present is not None and not force:
        if expected.of_file(present) == expected:
            typer.echo(f"{name} is already downloaded and verified ({expected.algorithm}): "
                       f"{present}", err=True)
            typer.echo(str(present))
            return
        typer.echo(f"{present} does not match {name}'s checksum; downloading it again.", err=True)

    url = registry.asset_url(asset, mirror)
    typer.echo(f"downloading {name}{approx} from {url}", err=True)
    try:
        with DownloadBar(name) as progress:
            path = download(url, dest, expected, progress=progress)
    except DownloadFailed as exc:
        fail(str(exc), 1)
    typer.echo(f"saved {name} to {path} ({expected.algorithm} verified)", err=True)
    if info is None:  # your own model: say how it will run
        architecture, note = custom_architecture(path)
        typer.echo(f"{name}: {note}" + (f" (runs as {architecture})" if architecture else ""),
                   err=True)
    typer.echo(str(path))


class DownloadBar:
    """A Rich download bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, name: str):
        self.name = name
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        if console.is_terminal:
            self.bar = Progress(TextColumn(f"[bold]{self.name}"), BarColumn(),
                                DownloadColumn(binary_units=True), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=console)
            self.bar.start()
        return self.update

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
