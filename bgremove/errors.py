"""The errors the engine tells apart: a file that failed, and a reason to stop the whole batch."""

from __future__ import annotations


class BgRemoveError(Exception):
    """Base class; the message is written for the user."""


class UsageError(BgRemoveError):
    """The command line or settings are wrong (exit code 2)."""


class FileFailed(BgRemoveError):
    """This one input could not be processed; the batch goes on.

    `request_id` is the API's id for the failed request, when there was one. `detail` is what a
    library underneath said (Pillow's own words), for `--verbose` and `--json`: the message says
    what happened in words for the user.
    """

    def __init__(self, message: str, request_id: str | None = None, *,
                 detail: str | None = None):
        super().__init__(message)
        self.request_id = request_id
        self.detail = detail


class ImageError(FileFailed, ValueError):
    """The bytes are not an image we can read, or break a limit."""


class NotAnImage(ImageError):
    """The bytes are no image at all (a file found in a folder that is no image is skipped)."""


class StopBatch(BgRemoveError):
    """Nothing more can succeed: stop sending work. `exit_code` is what the CLI exits with."""

    exit_code = 1
    reason = "stopped"


class AuthenticationFailed(StopBatch):
    exit_code = 3
    reason = "authentication"


class OutOfCredits(StopBatch):
    exit_code = 4
    reason = "out of credits"


class SetupError(StopBatch):
    """The setup is wrong, not the file: the API cannot be reached or is not the API, the output
    cannot be written, the port is taken. Every other file would fail the same way, so stop."""

    exit_code = 5
    reason = "setup"


class ModelUnavailable(UsageError):
    """The model asked for is unknown here or not downloaded."""


class CreditLimitReached(StopBatch):
    """This run spent the credits it was allowed (`--max-credits`); the rest is left for later."""

    exit_code = 4
    reason = "credit limit reached"
