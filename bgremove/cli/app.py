"""The command line's entry: the `bgremove` group (whose default command is `remove`, so
`bgremove photos/ -o out/` works), `--version`, and main(). Each command is a module of
bgremove/cli/commands/, registered here.

Heavy modules (numpy, onnxruntime, Pillow's codecs, the server) are imported inside the commands
that need them, so `bgremove --help` and `bgremove --version` start in a blink.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from bgremove import __version__
from bgremove.cli.commands import config, fail, frames, keys, models, remove, serve
from bgremove.cli.exits import USAGE
from bgremove.cli.reference import attach as attach_reference

if TYPE_CHECKING:  # typer vendors click: its types are typer's
    from typer._click import Context
    from typer._click.shell_completion import CompletionItem


class DefaultCommandGroup(TyperGroup):
    """`bgremove in/ -o out/` means `bgremove remove in/ -o out/`: anything that is not a
    sub-command name (or a top-level flag) is handed to the default command."""

    default_command = "remove"
    top_level_flags = {"--help", "-h", "--version", "--install-completion", "--show-completion"}

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in self.top_level_flags:
            _refuse_a_mistyped_command(args, list(self.commands))
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Context) -> object:
        try:
            return super().invoke(ctx)  # parses the sub-command's arguments, then runs it
        except typer.BadParameter as exc:
            exc.message = _plain_words(exc.message, exc.__cause__)
            raise

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        # `bgremove --mo<TAB>` offers the default command's options too, as `bgremove --mode`
        # runs that command.
        results = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            known = {item.value for item in results}
            default = self.commands[self.default_command]
            results += [item for item in default.shell_complete(ctx, incomplete)
                        if item.value not in known]
        return results


# Typer checks option values with pydantic, whose messages speak of Python ("Value error, ...",
# "Input should be a valid integer, unable to parse string as an integer").
_PYDANTIC_WORDS = [
    (r"^Value error, ", ""),
    (r"^Input should be a valid integer.*", "{value} is not a whole number"),
    (r"^Input should be a valid number.*", "{value} is not a number"),
    (r"^Input should be greater than or equal to (\S+)", r"must be \1 or more, not {value}"),
    (r"^Input should be less than or equal to (\S+)", r"must be \1 or less, not {value}"),
    (r"^Input should be greater than (\S+)", r"must be more than \1, not {value}"),
    (r"^Input should be less than (\S+)", r"must be less than \1, not {value}"),
    (r"^Input should be (.*)", r"should be \1, not {value}"),
]


def _plain_words(message: str, cause: BaseException | None) -> str:
    import re

    errors = getattr(cause, "errors", None)
    value = errors()[0].get("input") if callable(errors) and errors() else None
    for pattern, words in _PYDANTIC_WORDS:
        if re.match(pattern, message):
            return re.sub(pattern, words, message).replace("{value}", repr(value))
    return message


def _refuse_a_mistyped_command(args: list[str], commands: list[str]) -> None:
    """`bgremove model list` or `bgremove remvoe x`: a bare word that names no file but is close
    to a command is a typo, not an input that does not exist. A word with an extension
    (`frame.jpg`) or a path (`photos/`, `./serve`) is an input: a missing one is answered as
    one, by the command."""
    from difflib import get_close_matches

    word = args[0]
    if word.startswith("-") or os.path.lexists(word) or not _could_be_a_command(word):
        return
    match = get_close_matches(word, commands, n=1, cutoff=0.6)
    if match:
        meant = " ".join([match[0], *args[1:3]])
        fail(f"no such command or file: {word!r}. Did you mean `bgremove {meant}`? "
             "(see bgremove --help)", USAGE)


def _could_be_a_command(word: str) -> bool:
    return word.isascii() and word.replace("-", "").isalpha() and word.islower()


app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Remove image backgrounds in bulk, offline or through the Background Removal API.\n\n"
    "Example: bgremove photos/ -o cutouts/ --mode quality",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bgremove {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from bgremove.cli import interrupts

    if ctx.invoked_subcommand != "remove":  # the remove command handles interrupts itself
        interrupts.like_ctrl_c()


# In the order `bgremove --help` lists them (the commands first, then the groups).
for command in (remove, config, serve, keys, models, frames):
    command.register(app)
attach_reference(app)  # each --help ends with where the reference lives


def main() -> None:
    try:
        # The name is fixed so that `python -m bgremove` shows and completes as `bgremove`.
        app(prog_name="bgremove")
    except KeyboardInterrupt:
        typer.echo("bgremove: interrupted", err=True)
        sys.exit(130)
    except ImportError as exc:
        # Ctrl-C while onnxruntime initialises surfaces as an ImportError around it.
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        typer.echo("bgremove: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout has gone (`bgremove --json ... | head -1`): stop quietly, and
        # point stdout at /dev/null so Python's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
