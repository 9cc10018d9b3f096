"""Every error bgremove raises, in one tree:

    BgRemoveError                 the base: a message for people, and the fields it is made of
    ├── UsageError                the call, the command line or the settings are wrong
    │   ├── OptionError           one option's value is wrong (also a ValueError)
    │   ├── ModelUnavailable      the model asked for is unknown here or not downloaded
    │   └── UnknownKeyId          (the key store) no key has this id
    ├── FileFailed                this one input could not be processed; a batch goes on
    │   └── ImageError            not an image we read, or over a limit (also a ValueError)
    │       └── NotAnImage        no image at all (a folder's other files are skipped)
    └── StopBatch                 nothing more can succeed: the batch stops sending work
        ├── AuthenticationFailed  the API refused the key
        ├── OutOfCredits          the API's credits are spent
        ├── CreditLimitReached    this run spent the credits it was allowed
        └── SetupError            the setup is wrong, not the file
            └── StoreUnavailable  the key database cannot be opened (also a StoreError)
                └── StoreMissing  no key database where one was expected
    DownloadFailed (a BgRemoveError)  a model could not be fetched or did not verify
    StoreError (a BgRemoveError)      the key database failed a statement

Messages are in the library's words: an option is named by its keyword (`max_size`), as a Python
caller passes it. A message is kept as its parts, the options among them as `Option`s, so the
command line can say the same with its flags (`--max-size`, in bgremove/cli/exits.py, which also
maps errors to exit codes: those belong to the command, not to the library).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """An option named in a message: `max_size` to a Python caller, `--max-size` on the command
    line. `value` follows the name: `max_size=N` (`--max-size N`); "False" is the option turned
    off (`include_mask=False`, `--no-include-mask`)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"


Part = str | Option


class Words(str):
    """A message that is not an error (a warning), in the library's words, keeping its parts as
    a BgRemoveError does: `words(spell)` says it with the command line's flags."""

    parts: tuple[Part, ...]

    def __new__(cls, *parts: Part) -> Words:
        text = super().__new__(cls, "".join(map(str, parts)))
        text.parts = parts
        return text

    def words(self, spell: Callable[[Option], str] = str) -> str:
        return "".join(part if isinstance(part, str) else spell(part) for part in self.parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return Words, self.parts


class BgRemoveError(Exception):
    """The base class. `str()` is the message for a Python caller; `words(spell)` the same
    message with every option spelled by `spell` (the command line's flags). `option`: the
    option at fault, if one is (the first one the message names, unless given); `path`: the
    file or folder at fault, if one is."""

    def __init__(self, *parts: Part, option: str | None = None,
                 path: str | os.PathLike[str] | None = None):
        self.parts = parts
        named = [part.name for part in parts if isinstance(part, Option)]
        self.option = option or (named[0] if named else None)
        self.path = path
        super().__init__(self.words())

    def words(self, spell: Callable[[Option], str] = str) -> str:
        return "".join(part if isinstance(part, str) else spell(part) for part in self.parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a Dask worker's error) with its parts and fields, not only its message.
        return _rebuild, (type(self), self.parts, dict(self.__dict__))


def _rebuild(kind: type[BgRemoveError], parts: tuple[Part, ...],
             fields: dict[str, Any]) -> BgRemoveError:
    error = kind.__new__(kind)
    BgRemoveError.__init__(error, *parts)
    error.__dict__.update(fields)
    return error


class UsageError(BgRemoveError):
    """The call, the command line or the settings are wrong."""


class OptionError(UsageError, ValueError):
    """One option's value is wrong; `option` names it."""


class ModelUnavailable(UsageError):
    """The model asked for is unknown here or not downloaded."""


class FileFailed(BgRemoveError):
    """This one input could not be processed; the batch goes on.

    `request_id` is the API's id for the failed request, when there was one. `detail` is what a
    library underneath said (Pillow's own words), for `--verbose` and `--json`: the message says
    what happened in words for the user.
    """

    def __init__(self, *parts: Part, request_id: str | None = None, detail: str | None = None,
                 option: str | None = None, path: str | os.PathLike[str] | None = None):
        super().__init__(*parts, option=option, path=path)
        self.request_id = request_id
        self.detail = detail


class ImageError(FileFailed, ValueError):
    """The bytes are not an image we can read, or break a limit."""


class NotAnImage(ImageError):
    """The bytes are no image at all (a file found in a folder that is no image is skipped)."""


class StopBatch(BgRemoveError):
    """Nothing more can succeed: stop sending work. `reason` says why in a word or two (a
    report's `stopped`)."""

    reason = "stopped"


class AuthenticationFailed(StopBatch):
    reason = "authentication"


class OutOfCredits(StopBatch):
    reason = "out of credits"


class SetupError(StopBatch):
    """The setup is wrong, not the file: the API cannot be reached or is not the API, the output
    cannot be written, the port is taken. Every other file would fail the same way, so stop."""

    reason = "setup"


class CreditLimitReached(StopBatch):
    """This run spent the credits it was allowed (`max_credits`); the rest is left for later."""

    reason = "credit limit reached"


def credit_limit(spent: int) -> CreditLimitReached:
    """The error of a run that spent the credits it was allowed (`max_credits`)."""
    return CreditLimitReached(f"spent the {spent} credits this run may use (",
                              Option("max_credits"), ")")


class DownloadFailed(BgRemoveError):
    """The model could not be fetched or did not verify; nothing was saved."""


class UnknownKeyId(UsageError):
    """No key has this id."""


class StoreError(BgRemoveError):
    """The key database failed a statement."""


class StoreUnavailable(SetupError, StoreError):
    """The key database cannot be opened or reached: the setup's fault, not a request's."""


class StoreMissing(StoreUnavailable):
    """No key database where one was expected (and none is made: only creating a key makes one)."""
