"""Payload-schema registries."""
