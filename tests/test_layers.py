"""The library never imports the command line: flags, exit codes, progress bars and settings files
live in bgremove/cli/, and only bgremove/__main__.py (the `bgremove` entry point) reaches into it.
Every import counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import bgremove

PACKAGE = Path(bgremove.__file__).parent


def imported_modules(path: Path) -> set[str]:
    here = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return imports_of(path.read_text(encoding="utf-8"), here)


def imports_of(source: str, here: str) -> set[str]:
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = here.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_nothing_outside_the_cli_package_imports_it():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative == Path("__main__.py"):
            continue
        cli = {name for name in imported_modules(path)
               if name == "bgremove.cli" or name.startswith("bgremove.cli.")}
        if cli:
            offenders[str(relative)] = sorted(cli)
    assert not offenders, f"library modules that import the command line: {offenders}"


def test_the_check_sees_imports_inside_functions_and_relative_ones():
    source = "def f():\n    from bgremove.cli import exits\nfrom ..cli.settings import load\n"
    found = imports_of(source, "bgremove.server.app")
    assert {"bgremove.cli.exits", "bgremove.cli.settings.load"} <= found
