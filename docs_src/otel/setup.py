from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.otel import instrument

# Configure the SDK as usual (an OTLP exporter in production); an in-memory one keeps this example self-contained.
spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
meter_provider = MeterProvider()
# Global providers (trace.set_tracer_provider(...)) set before the app starts are picked up without this call.
instrument(tracer_provider, meter_provider)

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])


@app.post("/orders")
async def place_order() -> dict[str, bool]:
    dispatch("order.placed", {"order_id": 7})  # span "send order.placed"
    return {"ok": True}
