import os

from fastapi import FastAPI

from fastapi_events import (  # each also in its broker package, fastapi_events.brokers.<sqs|pubsub|kafka|redis>
    GoogleCloudSimplePubSubHandler,
    KafkaForwardHandler,
    RedisStreamForwardHandler,
    SQSForwardHandler,
)
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event

SPOOL_DIR = os.environ.get("SPOOL_DIR", "/var/lib/app")


def order_key(event: Event) -> str:
    return str(event[1]["order_id"])  # events with the same key keep their order


app = FastAPI()
app.add_middleware(
    EventHandlerASGIMiddleware,
    handlers=[
        local_handler,
        SQSForwardHandler(queue_url="orders", region_name="eu-central-1", spool_path=f"{SPOOL_DIR}/sqs.spool"),
        GoogleCloudSimplePubSubHandler(project_id="acme", topic_id="orders"),
        KafkaForwardHandler("orders", "kafka:9092", key=order_key, config={"linger.ms": 20}),
        RedisStreamForwardHandler("orders", url="redis://redis:6379/0", maxlen=100_000),
    ],
)
