"""Kafka (confluent-kafka): the forwarder's transport and the consumer's source."""
