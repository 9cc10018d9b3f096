"""The remote backend: each image goes to the Background Removal API and the cut-out comes back.

One `httpx.Client` serves every worker thread (connections are reused). Before a request starts,
the file is checked against the API's limits, so a file the API would refuse costs nothing, and
the rate limiter grants a slot, so the pool never exceeds the API's requests-per-minute. Transient
failures (429, 5xx, timeouts, dropped connections) are retried with backoff; 401 and 403 stop the
batch. The API key is sent only as `x-api-key` and kept out of every message.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from typing import NoReturn
from urllib.parse import urlsplit

import httpx

from bgremove.apikey import Secret
from bgremove.backends import Result
from bgremove.contract import CONTENT_TYPES, RATE_LIMIT, RATE_WINDOW, check_upload
from bgremove.errors import (
    AuthenticationFailed,
    FileFailed,
    OutOfCredits,
    StopBatch,
    UsageError,
)
from bgremove.imaging.decode import SNIFF_BYTES, sniff
from bgremove.options import RGB, WHITE, OutputFormat, RemovalOptions
from bgremove.ratelimit import RateLimiter

# A cut-out of a large photo in quality mode takes a while on the server: the read timeout is
# generous, because a request that times out after the server did the work may be charged twice
# when it is retried. Connecting and uploading get shorter limits.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=60.0)
MAX_RETRY_AFTER = 300.0
# 408 and 5xx are the server's trouble, not the file's: worth another try.
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


def check_limits(data: bytes) -> str:
    """Refuse what the API would refuse, before a credit is spent; return the format's name."""
    return check_upload(data)


def check_api_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--api-url {url!r}: expected an http:// or https:// address")
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


def fill_background(data: bytes, colour: RGB, output_format: OutputFormat) -> bytes:
    """Composite an RGBA cut-out over a solid colour and encode it, as the local engine does."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    from bgremove.imaging.compose import encode, flatten

    with Image.open(BytesIO(data)) as image:
        rgba = np.asarray(image.convert("RGBA"))
    alpha = rgba[:, :, 3].astype(np.float32) * (1.0 / 255.0)
    return encode(flatten(rgba[:, :, :3], alpha, np.asarray(colour, dtype=np.float32)),
                  output_format)


class RemoteBackend:
    """Sends each image to the API. `process` is safe to call from many threads at once."""

    name = "remote"

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
        self._owns_client = client is None
        self.client = client or httpx.Client(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        self.timeout = timeout
        self.limiter = RateLimiter(rate_limit, rate_window)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.requests_sent = 0
        self._stopped: StopBatch | None = None
        # Set on 401/403: requests waiting for a slot or a backoff give up instead of sending.
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"RemoteBackend({self.api_url!r})"

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        kind = check_limits(data)
        fields = options.form_fields()
        # The API fills a dropped background with white only: for another colour, ask for the
        # matte (losslessly) and composite here, so the option means what it means locally.
        fill_here = not options.include_mask and options.background_color != WHITE
        if fill_here:
            fields.update(includeMask="true", outputFormat=OutputFormat.png.value)
        response = self._post(data, kind, fields)

        request_id = response.headers.get("x-request-id")
        body = response.content
        expected = "png" if fill_here else options.output_format.value
        if sniff(body[:SNIFF_BYTES]) != expected:
            raise FileFailed(f"the API answered 200 but not with a {expected.upper()} image",
                             request_id)
        if fill_here:
            body = fill_background(body, options.background_color, options.output_format)
        return Result(
            body,
            credits_spent=1,
            credits_remaining=_int_or_none(response.headers.get("x-user-credits")),
            request_id=request_id,
        )

    def _post(self, data: bytes, kind: str, fields: dict[str, str]) -> httpx.Response:
        failures = 0
        while True:
            self._raise_if_stopped()
            if not self.limiter.acquire(self._halt):
                self._raise_if_stopped()
            with self._lock:
                self.requests_sent += 1
            delay: float | None = None
            request_id: str | None = None
            try:
                response = self.client.post(
                    self.api_url,
                    headers={"x-api-key": self._key.reveal()},
                    data=fields,
                    files={"file": (f"image.{kind}", data, CONTENT_TYPES[kind])},
                    timeout=self.timeout,
                )
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise FileFailed(f"cannot send the request: {self._describe(exc)}") from None
            except httpx.RequestError as exc:  # timeouts, refused or dropped connections
                problem = self._describe(exc)
            else:
                status = response.status_code
                if status < 300:
                    return response
                request_id = response.headers.get("x-request-id")
                problem = f"{self._api_message(response)} (HTTP {status})"
                if status == 401:
                    self._stop(AuthenticationFailed(
                        f"the API rejected the API key: {problem}; check --api-key, "
                        "--api-key-file or BGREMOVE_API_KEY"))
                if status == 403:
                    self._stop(OutOfCredits(
                        f"the account is out of credits: {problem}; once it has more, run "
                        "the same command again to process the rest"))
                if 300 <= status < 400:
                    # Not followed: the key would go along to wherever the redirect points.
                    where = self._key.redact(response.headers.get("location", "?"))
                    raise FileFailed(f"the API address redirects (HTTP {status}) to {where}; "
                                     "give that address as --api-url", request_id)
                if status not in RETRY_STATUSES:
                    raise FileFailed(f"the API refused this image: {problem}", request_id)
                if status == 429:
                    # Everyone waits, not only this thread: the server is telling the whole pool.
                    delay = retry_after_seconds(response.headers.get("retry-after"))
                    self.limiter.defer(delay if delay is not None else self._backoff(failures + 1))
                    delay = 0.0
            failures += 1
            if failures > self.max_retries:
                raise FileFailed(f"gave up after {failures} attempts: {problem}", request_id)
            if delay is None:
                delay = self._backoff(failures)
            if delay > 0 and self._halt.wait(delay):
                self._raise_if_stopped()

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
            raise type(stopped)(str(stopped))

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
