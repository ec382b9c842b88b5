# Server fixtures (moto_server, Pub/Sub emulator, Kafka-protocol broker, redis-server) live in tests/_servers.py.
pytest_plugins = ["tests._servers"]
