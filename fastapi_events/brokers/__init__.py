"""One package per broker (``sqs``, ``pubsub``, ``kafka``, ``redis``): its forwarder, the forwarder's transport,
the consumer's source and its consumer URL."""
