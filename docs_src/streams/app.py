# app.py - run with: uvicorn app:app
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.stream import EventStream

stream = EventStream(history=1000)  # or EventStream(url="redis://127.0.0.1:6379/0/live") with several workers
app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler, stream])
app.mount("/events", stream.app)


@app.post("/orders/{order_id}")
async def place_order(order_id: int) -> dict[str, int]:
    dispatch("order.placed", {"id": order_id})
    return {"id": order_id}


@app.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse("""<ul id="orders"></ul><script>
      const source = new EventSource("/events?events=order.*");   // reconnects and resumes by itself
      source.addEventListener("order.placed", (e) => {
        const li = document.createElement("li");
        li.textContent = `#${e.lastEventId}: order ${JSON.parse(e.data).id}`;
        document.getElementById("orders").append(li);
      });
      source.addEventListener("overflow", () => console.warn("fell behind; reconnecting"));
    </script>""")
