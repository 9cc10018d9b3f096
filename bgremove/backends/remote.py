"""The remote session: each image goes to the Background Removal API and the cut-out comes back.

One `httpx.Client` serves every worker thread (connections are reused). A request is layered as
httpx layers `send`: `_post` retries, `_attempt` paces and sends one request, `_verdict` decides
what an answer or a network error means. Before anything is sent the file is made into what the
API takes (shrunk for `max_size`, a TIFF or AVIF turned into PNG) and checked against its limits,
so a file the API would refuse costs nothing. The pacer grants a slot per request, so the pool
never exceeds the API's requests per minute. Transient failures (429, 5xx, timeouts, dropped
connections) are retried with backoff; a bad key, no credits, or an address that does not answer
as the API does stop the batch. The API key is sent only as `x-api-key` and kept out of every
message.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass, replace
from io import BytesIO
from typing import IO, TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import httpx

from bgremove.apikey import Secret
from bgremove.backends import Result, SessionBase
from bgremove.contract import (
    CONTENT_TYPES,
    MAX_FILE_BYTES,
    MAX_SIDE,
    RATE_LIMIT,
    RATE_WINDOW,
    check_upload,
    check_upload_file,
)
from bgremove.errors import (
    AuthenticationFailed,
    FileFailed,
    Option,
    OptionError,
    OutOfCredits,
    SetupError,
    StopBatch,
)
from bgremove.imaging.decode import SNIFF_BYTES, open_image, sniff
from bgremove.options import WHITE, OutputFormat, RemovalOptions
from bgremove.ratelimit import Pacer

if TYPE_CHECKING:
    from PIL import Image

# A cut-out of a large photo in quality mode takes a while on the server: the read timeout is
# generous, because a request that times out after the server did the work may be charged twice
# when it is retried. Connecting and uploading get shorter limits.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=60.0)
MAX_RETRY_AFTER = 300.0
# 408 and 5xx are the server's trouble, not the file's: worth another try.
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
# What the API answers, by its contract. Anything else (404, 405, a login page's 200) means the
# address is not the API: every other file would get the same, so the batch stops.
API_STATUSES = {200, 400, 401, 403, 429} | RETRY_STATUSES
# Until the API has answered once, a refused connection is a wrong address or a server that is
# not running, not a passing fault: one more try, then the batch stops.
FIRST_CONTACT_TRIES = 2


# Said after the API's refusals about size.
_ADVICE = (Option("max_size"), " shrinks big photos")


def check_limits(data: bytes) -> str:
    """Refuse what the API would refuse, before a credit is spent; return the format's name."""
    return check_upload(data, advice=_ADVICE)


def check_file(file: IO[bytes], size: int, max_size: int | None) -> None:
    """Refuse, with the words `process` would use, what the file's size and header show it
    would refuse before sending (nothing is decoded or sent): for a dry run. A file that is
    shrunk or converted here first passes: the API's limits then depend on what that makes."""
    if _sent_as_is(file, size, max_size):
        file.seek(0)
        check_upload_file(file, size, advice=_ADVICE)


def _sent_as_is(file: IO[bytes], size: int, max_size: int | None) -> bool:
    """Whether the file of `size` bytes goes to the API as it is (check_limits judges it), not
    shrunk to `max_size` or converted here first. NotAnImage for what is no image at all."""
    if size > MAX_FILE_BYTES and max_size is None:
        return True  # refused by check_limits, without reading it
    kind = sniff(file.read(SNIFF_BYTES))
    file.seek(0)
    with open_image(file) as image:
        longest = max(image.size)
    too_big = max_size is not None and longest > max_size
    return not too_big and (kind in CONTENT_TYPES or longest > MAX_SIDE)


def upload_form(data: bytes, max_size: int | None) -> bytes:
    """The bytes to upload: the file itself when the API takes it as it is; else shrunk to
    `max_size` or turned into a format the API takes (PNG, lossless), here, where it is free."""
    if _sent_as_is(BytesIO(data), len(data), max_size):
        return data  # as it is, or refused by check_limits with the reason
    kind = sniff(data[:SNIFF_BYTES])
    from PIL import Image

    from bgremove.imaging.decode import decode

    decoded = decode(data, max_size=max_size)
    picture = Image.fromarray(decoded.rgb)
    if decoded.alpha is not None:
        picture.putalpha(Image.fromarray(decoded.alpha))
    buffer = BytesIO()
    # The profile goes along: the pixels are still in the photo's colours.
    profile = {} if decoded.icc_profile is None else {"icc_profile": decoded.icc_profile}
    if kind == "jpeg" and decoded.alpha is None:
        # a photo stays a photo, at a tenth of the size
        picture.save(buffer, "JPEG", quality=95, **profile)
    else:
        picture.save(buffer, "PNG", compress_level=1, **profile)
    return buffer.getvalue()


def input_profile(data: bytes) -> bytes | None:
    """The RGB colour profile of image bytes, from their header (nothing is decoded)."""
    from bgremove.imaging.profiles import rgb_profile

    with open_image(data) as image:
        return rgb_profile(image)


def check_api_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError(Option("api_url"), f" {url!r}: expected an http:// or https:// address")
    return url


def retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))


def finish_locally(data: bytes, options: RemovalOptions, icc_profile: bytes | None = None) -> bytes:
    """Composite the API's lossless cut-out over the colour and encode it as asked, as the local
    engine does: for the colours and formats the API does not offer, the matte alone, the
    product-photo geometry and background image, and the photo's colour profile (`icc_profile`,
    which the output carries whether or not the API's answer did)."""
    import numpy as np
    from PIL import Image

    from bgremove.imaging.compose import encode, finish, flatten

    with Image.open(BytesIO(data)) as image:
        rgba = np.asarray(image.convert("RGBA"))
    if options.shaped:
        return encode(finish(rgba[:, :, :3], rgba[:, :, 3], options), options.output_format,
                      icc_profile)
    if options.only_mask:  # the contract has no mask-only field: the matte is the answer's alpha
        return encode(Image.fromarray(np.ascontiguousarray(rgba[:, :, 3]), "L"),
                      options.output_format)
    if options.include_mask:
        return encode(Image.fromarray(rgba, "RGBA"), options.output_format, icc_profile)
    alpha = rgba[:, :, 3].astype(np.float32) * (1.0 / 255.0)
    background = np.asarray(options.background_color, dtype=np.float32)
    return encode(flatten(rgba[:, :, :3], alpha, background), options.output_format,
                  icc_profile)


@dataclass
class Retry:
    """Send again: after `delay` seconds (None: the backoff's), `problem` if it gives up.
    `counted`: whether it counts towards max_retries (a 429 does not: a slot always frees up)."""

    problem: str
    delay: float | None = None
    request_id: str | None = None
    counted: bool = True


class RemoteSession(SessionBase):
    """Sends each image to the API at `api_url` with `api_key`. Safe to use from many threads.

    `rate_limit` requests start in any `rate_window` seconds at most; `client` may be an
    `httpx.Client` of your own (a test's transport, a proxy).
    """

    kind = "remote"
    providers: list[str] = []
    device_warning = None

    def __init__(
        self,
        api_url: str,
        api_key: Secret | str,
        *,
        client: httpx.Client | None = None,
        rate_limit: int = RATE_LIMIT,
        rate_window: float = RATE_WINDOW,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ):
        self.api_url = check_api_url(api_url)
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        if not self._key.reveal().isascii():
            # An HTTP header cannot carry it; said without showing the key or its characters.
            raise OptionError("the API key has a character that is not ASCII, so it cannot be "
                              "sent (a pasted quote or dash?): check ", Option("api_key"), ", ",
                              Option("api_key_file"), " or BGREMOVE_API_KEY")
        self._owns_client = client is None
        self.client = client or httpx.Client(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        self.timeout = timeout
        self.pacer = Pacer(rate_limit, rate_window)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._stopped: StopBatch | None = None
        # Set on a stop: requests waiting for a slot or a backoff give up instead of sending.
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._random = random.Random()
        self._reached = False  # the API has answered at least once

    def __repr__(self) -> str:
        return f"RemoteSession({self.api_url!r})"

    @property
    def model_id(self) -> str:
        from bgremove.stamps import remote_model_id

        return remote_model_id(self.api_url)

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        data = upload_form(data, options.max_size)
        kind = check_limits(data)
        fields = options.form_fields()
        # The API fills a dropped background with white only, and writes PNG or WebP: for another
        # colour or JPEG, ask for the lossless cut-out and finish it here, so an option means
        # what it means locally.
        colour = not options.include_mask and options.background_color != WHITE
        # The geometry and background image of product photos are made here too.
        transparent = colour or options.include_mask or options.shaped
        here = (colour or options.only_mask or options.shaped
                or options.output_format not in (OutputFormat.png, OutputFormat.webp))
        if here:
            fields.update(outputFormat=OutputFormat.png.value,
                          includeMask="true" if transparent else "false")
        response = self._post(data, kind, fields)

        request_id = response.headers.get("x-request-id")
        body = response.content
        expected = "png" if here else options.output_format.value
        if sniff(body[:SNIFF_BYTES]) != expected:
            raise FileFailed(f"the API answered 200 but not with a {expected.upper()} image",
                             request_id=request_id)
        # A photo with a colour profile: its output carries it, whatever the API's answer did.
        profile = None if options.only_mask else input_profile(data)
        if here:
            body = finish_locally(body, options, profile)
        elif profile is not None:
            from bgremove.imaging.profiles import tag

            body = tag(body, profile)
        return Result(body, credits_spent=1, request_id=request_id,
                      credits_remaining=_int_or_none(response.headers.get("x-user-credits")))

    def remove_image(self, image: Image.Image, options: RemovalOptions) -> Image.Image:
        from PIL import Image

        buffer = BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        lossless = replace(options, output_format=OutputFormat.png)
        with Image.open(BytesIO(self.process(buffer.getvalue(), lossless).data)) as cutout:
            cutout.load()
            return cutout

    # -- the request, in layers ------------------------------------------------------------------

    def _post(self, data: bytes, kind: str, fields: dict[str, str]) -> httpx.Response:
        """Send until the API gives an image, the file is refused, or the batch must stop."""
        failures = 0
        while True:
            verdict = self._verdict(self._attempt(data, kind, fields), failures)
            if isinstance(verdict, httpx.Response):
                return verdict
            if not verdict.counted:
                continue  # the pacer holds the next attempt back
            failures += 1
            if failures > self.max_retries:
                raise FileFailed(f"gave up after {failures} attempts: {verdict.problem}",
                                 request_id=verdict.request_id)
            delay = self._backoff(failures) if verdict.delay is None else verdict.delay
            if delay > 0 and self._halt.wait(delay):
                self._raise_if_stopped()

    def _attempt(self, data: bytes, kind: str,
                 fields: dict[str, str]) -> httpx.Response | httpx.RequestError:
        """One request, once the pacer grants it a slot: the answer, or the network's error."""
        self._raise_if_stopped()
        if not self.pacer.acquire(self._halt):
            self._raise_if_stopped()
        try:
            return self.client.post(
                self.api_url,
                headers={"x-api-key": self._key.reveal()},
                data=fields,
                files={"file": (f"image.{kind}", data, CONTENT_TYPES[kind])},
                timeout=self.timeout,
            )
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise SetupError(f"cannot send a request to {self.api_url}: "
                             f"{self._describe(exc)}") from None
        except httpx.RequestError as exc:  # timeouts, refused or dropped connections
            return exc

    def _verdict(self, answer: httpx.Response | httpx.RequestError,
                 failures: int) -> httpx.Response | Retry:
        """What an answer means: the image (the response), another try, or an exception."""
        if isinstance(answer, httpx.RequestError):
            problem = self._describe(answer)
            if (not self._reached and isinstance(answer, httpx.ConnectError)
                    and failures + 1 >= FIRST_CONTACT_TRIES):
                self._stop(SetupError(f"cannot reach the API at {self.api_url}: {problem}; "
                                      "check ", Option("api_url"),
                                      " (or BGREMOVE_API_URL) and the network"))
            return Retry(problem)
        status = answer.status_code
        request_id = answer.headers.get("x-request-id")
        if 300 <= status < 400:
            # Not followed: the key would go along to wherever the redirect points.
            where = self._key.redact(answer.headers.get("location", "?"))
            self._stop(SetupError(f"the API address {self.api_url} redirects (HTTP {status}) to "
                                  f"{where}; give that address as ", Option("api_url")))
        if status not in API_STATUSES or not self._speaks_api(answer):
            self._stop(SetupError(
                f"{self.api_url} does not answer as the Background Removal API does (HTTP "
                f"{status}{self._content_type(answer)}); check ", Option("api_url"),
                " (or BGREMOVE_API_URL)"))
        self._reached = True
        if status < 300:
            return answer
        problem = f"{self._api_message(answer)} (HTTP {status})"
        if status == 401:
            self._stop(AuthenticationFailed(
                f"the API rejected the API key: {problem}; check ", Option("api_key"), ", ",
                Option("api_key_file"), " or BGREMOVE_API_KEY"))
        if status == 403:
            self._stop(OutOfCredits(
                f"the account is out of credits: {problem}; once it has more, run the same "
                "command again to process the rest"))
        if status not in RETRY_STATUSES:
            raise FileFailed(f"the API refused this image: {problem}", request_id=request_id)
        if status == 429:
            # Everyone waits, not only this thread: the server is telling the whole pool.
            delay = retry_after_seconds(answer.headers.get("retry-after"))
            self.pacer.defer(delay if delay is not None else self._backoff(failures + 1))
            return Retry(problem, 0.0, request_id, counted=False)
        return Retry(problem, None, request_id)

    @staticmethod
    def _speaks_api(response: httpx.Response) -> bool:
        """An image on success and a JSON error otherwise, as the contract says; a 5xx from a
        proxy in front of the API may be anything."""
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code < 300:
            return content_type.startswith("image/")
        if response.status_code >= 500 or response.status_code == 408:
            return True
        return content_type == "application/json"

    @staticmethod
    def _content_type(response: httpx.Response) -> str:
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        return f", {content_type}" if content_type else ""

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter, so a pool of failed requests does not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        return self._random.uniform(ceiling / 2, ceiling)

    def _describe(self, exc: httpx.RequestError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            text = f"no answer in time ({type(exc).__name__})"
        else:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # httpx messages name the URL, never the headers; redact anyway, in case a URL held it.
        return self._key.redact(text)

    def _api_message(self, response: httpx.Response) -> str:
        """The API's own `{"error": ...}` text, cut short, with the key masked if it echoed it."""
        try:
            message = str(json.loads(response.content)["error"])
        except (ValueError, KeyError, TypeError):
            message = response.reason_phrase or "error"
        return self._key.redact(message[:300])

    def _stop(self, exc: StopBatch) -> NoReturn:
        with self._lock:
            if self._stopped is None:
                self._stopped = exc
            self._halt.set()
        raise exc

    def cancel(self) -> None:
        """Give up on everything not yet sent (Ctrl-C): requests on the wire still finish."""
        with self._lock:
            if self._stopped is None:
                self._stopped = StopBatch("interrupted")
            self._halt.set()

    def _raise_if_stopped(self) -> None:
        stopped = self._stopped
        if stopped is not None:
            raise type(stopped)(*stopped.parts)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
