"""Consumer URL of the Amazon SQS broker."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ...consumer import Source
from ...errors import ConfigurationError
from .._registry import path_parts, query, reject_unknown, take_float

SCHEMES = ("sqs",)
#: The URL form and its options, for ``consume --help``.
USAGE = "sqs://QUEUE?region=R&endpoint_url=U        dead letters: QUEUE-dlq (or &dlq=NAME); &visibility_timeout=S"


def source_from_url(url: str) -> Source:
    """``sqs://QUEUE_NAME?region=R&endpoint_url=U[&dlq=NAME][&visibility_timeout=S]``.

    Region and endpoint default to ``AWS_DEFAULT_REGION``/``AWS_REGION`` and ``AWS_ENDPOINT_URL_SQS``/
    ``AWS_ENDPOINT_URL``.
    """
    from . import SQSSource

    parts = urlsplit(url)
    queue = unquote(parts.netloc) + "".join("/" + p for p in path_parts(url))
    if not queue:
        raise ConfigurationError(f"{url}: expected sqs://QUEUE_NAME")
    options = query(url)
    region = options.pop("region", None) or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    endpoint = (
        options.pop("endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_SQS")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    dlq = options.pop("dlq", None)
    visibility = take_float(options, "visibility_timeout", url)
    reject_unknown(options, url)
    source: Source = SQSSource(
        queue,
        region=region,
        endpoint_url=endpoint,
        dead_letter_queue=dlq,
        visibility_timeout=None if visibility is None else int(visibility),
    )
    return source
