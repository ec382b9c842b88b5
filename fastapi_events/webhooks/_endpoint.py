"""``WebhookEndpoint``: where to POST which events, and the secret they are signed with."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ._signing import decode_secret


@dataclass(frozen=True)
class WebhookEndpoint:
    """One subscriber URL.

    - ``url``: ``https://`` (or ``http://``) URL receiving one POST per matching event;
    - ``secret``: ``whsec_<base64>`` shared with the endpoint's owner (24-64 bytes once decoded); while rotating
      it, a sequence of secrets: each POST then carries one ``v1,`` signature per secret (space-separated, as
      Standard Webhooks says), so the owner's receiver accepts it whichever of them it holds;
    - ``events``: fnmatch patterns of the event names sent here (default: every event);
    - ``max_concurrency``: POSTs in flight to this endpoint at once (at most 10 per delivery round).
    """

    url: str
    secret: str | Sequence[str] = field(repr=False)
    events: Sequence[str] = ("*",)
    max_concurrency: int = 10
    _keys: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"a webhook url must be an http:// or https:// URL with a host, not {self.url!r}")
        if parts.username or parts.password:
            raise ConfigurationError("put no credentials in a webhook url: the signature authenticates the sender")
        if not isinstance(self.secret, (str, Sequence)):
            raise ConfigurationError("a webhook endpoint needs a secret, or a sequence of secrets while rotating")
        secrets = (self.secret,) if isinstance(self.secret, str) else tuple(self.secret)
        if not secrets:
            raise ConfigurationError("a webhook endpoint needs a secret, or a sequence of secrets while rotating")
        object.__setattr__(self, "_keys", tuple(decode_secret(secret) for secret in secrets))
        object.__setattr__(self, "secret", self.secret if isinstance(self.secret, str) else secrets)
        object.__setattr__(self, "events", event_patterns(self.events))
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int):
            raise ConfigurationError(f"max_concurrency must be an int >= 1, not {self.max_concurrency!r}")
        if self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be an int >= 1, not {self.max_concurrency!r}")

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The HMAC key of each secret, in the order given."""
        return self._keys

    def wants(self, event_name: str) -> bool:
        return matches(self.events, event_name)


def event_patterns(events: Sequence[str]) -> tuple[str, ...]:
    """``events=`` checked: a sequence of fnmatch patterns (a lone string would match by its characters)."""
    patterns = None if isinstance(events, str) or not isinstance(events, Iterable) else tuple(events)
    if patterns is None or not all(isinstance(p, str) for p in patterns):
        raise ConfigurationError(f"events must be a sequence of fnmatch patterns, not {events!r}")
    return patterns


def matches(patterns: Sequence[str], event_name: str) -> bool:
    return any(fnmatch.fnmatchcase(event_name, pattern) for pattern in patterns)


__all__ = ["WebhookEndpoint"]
