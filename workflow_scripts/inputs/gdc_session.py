"""How the workflow talks to the GDC API: the client (URL, token-carrying session, retry policy, log) and retries.

Every GDC request goes through `with_retries` and `raise_for_status`: 5xx, 429, timeouts, dropped connections and
truncated bodies are retried with exponential backoff; 404 is GdcNotFound (stale ids are resolved by name);
401/403 and other 4xx are permanent GdcErrors. The token is sent as the X-Auth-Token header and never logged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from workflow_scripts.inputs.gdc_manifest import GdcError, GdcNotFound

DEFAULT_API = "https://api.gdc.cancer.gov"
TOKEN_HEADER = "X-Auth-Token"
Result = TypeVar("Result")
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class Retryable(Exception):
    """A transient failure (5xx, timeout, dropped connection, truncated body) worth another attempt."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures: delay = min(backoff_s * 2**k, max_backoff_s)."""

    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff before retry number `attempt` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


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


def open_session(token: str | None = None) -> requests.Session:
    """A session that sends the token (when given) as X-Auth-Token on every request."""
    session = requests.Session()
    if token is not None:
        session.headers[TOKEN_HEADER] = token
    return session


@dataclass(frozen=True)
class GdcClient:
    """Where and how to reach the GDC: API base URL, HTTP session (with the token), retry policy and job log."""

    api: str = DEFAULT_API
    session: requests.Session = field(default_factory=open_session)
    policy: RetryPolicy = RetryPolicy()
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))

    def url(self, endpoint: str) -> str:
        """Join the configurable API base URL and an endpoint."""
        return f"{self.api.rstrip('/')}/{endpoint.lstrip('/')}"


def configured_client(
    api: str | None, token_file: str | os.PathLike | None, retries: int | str | None, log: logging.Logger
) -> GdcClient:
    """The client a job's config describes; an unset API or retry count (None or '') takes the default."""
    return GdcClient(
        api=api or DEFAULT_API,
        session=open_session(read_token(token_file)),
        policy=RetryPolicy(retries=RetryPolicy.retries if retries in (None, "") else int(retries)),
        log=log,
    )


def raise_for_status(response: requests.Response, what: str) -> None:
    """Map HTTP status to retryable (5xx, 429), not-found and permanent errors."""
    if response.status_code >= 500 or response.status_code == 429:
        raise Retryable(f"{what}: HTTP {response.status_code}")
    if response.status_code == 404:
        raise GdcNotFound(f"{what}: HTTP 404 not found at {response.url}")
    if response.status_code in (401, 403):
        raise GdcError(
            f"{what}: HTTP {response.status_code} access refused; controlled files need a valid token_file"
        )
    if response.status_code >= 400:
        raise GdcError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")


def with_retries(action: Callable[[], Result], what: str, client: GdcClient) -> Result:
    """Run `action()` retrying transient failures with exponential backoff; raise GdcError when they run out."""
    policy, attempt = client.policy, 0
    while True:
        try:
            return action()
        except (Retryable, *TRANSIENT) as error:
            attempt += 1
            if attempt > policy.retries:
                raise GdcError(f"{what}: giving up after {policy.retries} retries; last error: {error}") from None
            delay = policy.delay(attempt)
            client.log.warning("%s: %s; retry %d/%d in %.1f s", what, error, attempt, policy.retries, delay)
            time.sleep(delay)
