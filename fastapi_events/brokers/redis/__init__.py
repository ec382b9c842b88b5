"""Redis Streams (redis.asyncio): the forwarder's transport and the consumer's source."""
