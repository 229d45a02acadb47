"""The gateway's exception hierarchy.

    GatewayError
    ├── ConfigError        a user mistake in topics.yaml, the environment or the CLI (one line, exit 2)
    ├── SourceError        one source's fetch or parse failed; the source is marked, others go on
    │   ├── FetchError     HTTP or network trouble, with a `kind` label for metrics
    │   └── ParseError     the body is not what the adapter expects
    └── PublishError       the broker refused or is unreachable (handled by the reconnect loop)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """Invalid configuration; the message is one line meant for the user."""


class SourceError(GatewayError):
    """A source could not deliver readings this time."""

    kind = "source"


class FetchError(SourceError):
    """The HTTP request failed.

    Attributes:
        kind: short label for metrics, e.g. ``http_500``, ``timeout``, ``too_large``.
        retry_after: seconds upstream asked us to wait, if it said so.
    """

    def __init__(self, url: str, kind: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.kind = kind
        self.retry_after = retry_after


class ParseError(SourceError):
    """The response body could not be turned into readings."""

    kind = "parse"

    def __init__(self, detail: str, kind: str = "parse") -> None:
        super().__init__(detail)
        self.kind = kind


class PublishError(GatewayError):
    """Publishing to the broker failed."""
