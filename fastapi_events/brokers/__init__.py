"""Broker transports (one sub-package per broker) used by the forwarders and consumers."""
