"""How the workflow talks to the GDC API: the client (URL, token-carrying session, retry policy, log) and retries.

Status and connection retries are urllib3's `Retry` mounted through a requests `HTTPAdapter`: connection errors,
timeouts before the response and HTTP 429/500/502/503/504 are retried with bounded exponential backoff, honouring
(and capping) Retry-After. When they run out the request fails with a GdcError; 404 is GdcNotFound (stale ids are
resolved by name); 401/403, 501 and every other 4xx/5xx are permanent GdcErrors at once. A body cut mid-transfer
is `Retryable` and retried by `with_retries` (downloads resume it with a Range request).

The token is sent as the X-Auth-Token header only to the configured API's scheme, host and port: never set
session-wide, dropped on any redirect to another origin, and never logged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from workflow_scripts.inputs.gdc_manifest import GdcError, GdcNotFound

DEFAULT_API = "https://api.gdc.cancer.gov"
TOKEN_HEADER = "X-Auth-Token"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
DEFAULT_PORTS = {"http": 80, "https": 443}
Result = TypeVar("Result")


class Retryable(Exception):
    """A transient failure inside a response (truncated body, md5 mismatch) worth another attempt."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures: delay = min(backoff_s * 2**k, max_backoff_s).

    A Retry-After header is honoured up to max_backoff_s."""

    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff before retry number `attempt` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with the scheme's default port filled in: what the token is bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


class GdcRetry(Retry):
    """urllib3 Retry that caps Retry-After at the policy's max backoff and logs each retry to the job log."""

    def __init__(self, *args, max_wait_s: float = 120.0, log: logging.Logger | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_wait_s, self.log = max_wait_s, log

    def new(self, **kwargs) -> GdcRetry:
        """The next Retry state, keeping the cap and the log."""
        renewed = super().new(**kwargs)
        renewed.max_wait_s, renewed.log = self.max_wait_s, self.log
        return renewed

    def get_retry_after(self, response) -> float | None:
        """Retry-After in seconds, bounded by max_wait_s."""
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_wait_s)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        """Count one retry (raising MaxRetryError when exhausted) and log what is retried and when."""
        renewed = super().increment(method, url, response, error, _pool, _stacktrace)
        if renewed.log is not None:
            reason = f"HTTP {response.status}" if response is not None and response.status else repr(error)
            wait = (renewed.get_retry_after(response) if response is not None else None) or renewed.get_backoff_time()
            attempt = len(renewed.history)
            renewed.log.warning("%s %s: %s; retry %d/%d in %.1f s", method, url, reason, attempt,
                                attempt + (renewed.total or 0), wait)
        return renewed


def retry_adapter(policy: RetryPolicy, log: logging.Logger | None) -> HTTPAdapter:
    """An HTTPAdapter retrying connection errors, timeouts and transient statuses per the policy."""
    retry = GdcRetry(
        total=policy.retries, connect=policy.retries, read=policy.retries, status=policy.retries, other=0,
        redirect=None, allowed_methods=frozenset({"GET", "HEAD", "POST"}), status_forcelist=TRANSIENT_STATUS,
        backoff_factor=policy.backoff_s / 2, backoff_max=policy.max_backoff_s, respect_retry_after_header=True,
        raise_on_status=False, raise_on_redirect=False, max_wait_s=policy.max_backoff_s, log=log,
    )
    return HTTPAdapter(max_retries=retry)


class GdcSession(requests.Session):
    """A requests session that sends the token only to the API origin it is bound to, redirects included."""

    def __init__(self, token: str | None = None, api: str | None = None):
        super().__init__()
        self._token = token
        self.token_origin = origin(api) if api else None

    def __repr__(self) -> str:
        return f"GdcSession(token={'set' if self._token else None}, origin={self.token_origin})"

    def bind(self, api: str) -> None:
        """Bind the token to the API's scheme, host and port (first binding wins)."""
        if self.token_origin is None:
            self.token_origin = origin(api)

    def _apply_token(self, prepared: requests.PreparedRequest) -> None:
        """Set the token header for the API origin; remove it for every other host."""
        if self._token is not None and self.token_origin is not None and origin(prepared.url) == self.token_origin:
            prepared.headers[TOKEN_HEADER] = self._token
        else:
            prepared.headers.pop(TOKEN_HEADER, None)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        self._apply_token(prepared)
        return prepared

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        self._apply_token(prepared_request)


def read_token(token_file: str | os.PathLike | None) -> str | None:
    """Read a GDC authentication token; None when no token file is configured."""
    if token_file is None or str(token_file) == "":
        return None
    path = Path(token_file)
    if not path.is_file():
        raise GdcError(f"GDC token file {path} does not exist")
    token = path.read_text().strip()
    if not token:
        raise GdcError(f"GDC token file {path} is empty")
    return token


def open_session(token: str | None = None, api: str | None = None) -> GdcSession:
    """A session sending the token (when given) as X-Auth-Token to the API origin only (bound by GdcClient)."""
    return GdcSession(token, api)


@dataclass(frozen=True)
class GdcClient:
    """Where and how to reach the GDC: API base URL, HTTP session (with the token), retry policy and job log.

    Creating a client binds the session's token to the API origin and mounts the retrying adapter."""

    api: str = DEFAULT_API
    session: requests.Session = field(default_factory=open_session)
    policy: RetryPolicy = RetryPolicy()
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))

    def __post_init__(self) -> None:
        if isinstance(self.session, GdcSession):
            self.session.bind(self.api)
        adapter = retry_adapter(self.policy, self.log)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, endpoint: str) -> str:
        """Join the configurable API base URL and an endpoint."""
        return f"{self.api.rstrip('/')}/{endpoint.lstrip('/')}"

    def request(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        """One HTTP request with the adapter's retries; exhausted connection retries are a GdcError naming `what`."""
        kwargs.setdefault("timeout", self.policy.timeout_s)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.RequestException as error:
            raise GdcError(f"{what}: giving up after {self.policy.retries} retries; last error: {error}") from None


def configured_client(
    api: str | None, token_file: str | os.PathLike | None, retries: int | str | None, log: logging.Logger
) -> GdcClient:
    """The client a job's config describes; an unset API or retry count (None or '') takes the default."""
    api = api or DEFAULT_API
    return GdcClient(
        api=api,
        session=open_session(read_token(token_file), api),
        policy=RetryPolicy(retries=RetryPolicy.retries if retries in (None, "") else int(retries)),
        log=log,
    )


def raise_for_status(response: requests.Response, what: str, retries: int | None = None) -> None:
    """Map HTTP status to errors: transient statuses the adapter gave up on, not-found, and permanent errors."""
    status = response.status_code
    if status in TRANSIENT_STATUS:
        tries = f" after {retries} retries" if retries is not None else ""
        raise GdcError(f"{what}: giving up{tries}; last answer HTTP {status}")
    if status == 404:
        raise GdcNotFound(f"{what}: HTTP 404 not found at {response.url}")
    if status in (401, 403):
        raise GdcError(f"{what}: HTTP {status} access refused; controlled files need a valid token_file")
    if status >= 400:
        raise GdcError(f"{what}: HTTP {status} (permanent, not retried): {response.text[:300]}")


def with_retries(action: Callable[[], Result], what: str, client: GdcClient) -> Result:
    """Run `action()` retrying Retryable failures (body cuts, md5 mismatch) with exponential backoff.

    Status and connection retries happen below, in the adapter; this loop covers what happens after the headers."""
    policy, attempt = client.policy, 0
    while True:
        try:
            return action()
        except Retryable as error:
            attempt += 1
            if attempt > policy.retries:
                raise GdcError(f"{what}: giving up after {policy.retries} retries; last error: {error}") from None
            delay = policy.delay(attempt)
            client.log.warning("%s: %s; retry %d/%d in %.1f s", what, error, attempt, policy.retries, delay)
            time.sleep(delay)
