"""Creating the topics forwarders and consumers need, so that a fresh cluster works without manual steps."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

logger = logging.getLogger("fastapi_events.kafka")

# Settings an admin or producer client shares with the consumer it is made for (connection and security);
# everything else in a consumer's configuration would be rejected or mean something else.
_SHARED_PREFIXES = ("security.", "sasl.", "ssl.", "client.dns.", "socket.", "broker.address.")


def connection_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``config`` about reaching the cluster (reusable by any client type)."""
    return {k: v for k, v in config.items() if k.startswith(_SHARED_PREFIXES) or k == "bootstrap.servers"}


def ensure_topics(config: Mapping[str, Any], topics: list[str], timeout: float = 10.0) -> None:
    """Create the topics of ``topics`` that do not exist (broker defaults for partitions and replicas).

    Raises when the cluster cannot be reached; a refused creation is only logged. Blocking: call it from a
    worker thread.
    """
    admin = AdminClient(dict(connection_config(config)))
    existing = admin.list_topics(timeout=timeout).topics
    missing = [topic for topic in topics if topic not in existing]
    if not missing:
        return
    futures = admin.create_topics([NewTopic(topic) for topic in missing], operation_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result(timeout)
            logger.info("created Kafka topic %s", topic)
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process won the race
            # Typically no rights to create topics: the cluster may auto-create it, or an operator will;
            # refusing to start would turn a missing dead-letter topic into a consumer that never runs.
            logger.warning("could not create Kafka topic %s: %s", topic, exc)


__all__ = ["connection_config", "ensure_topics"]
