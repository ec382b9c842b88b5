from fastapi import FastAPI

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])

welcomed: list[int] = []


@app.post("/users")
async def create_user() -> dict[str, int]:
    dispatch("user.created", {"id": 1})  # handled after the response is sent
    return {"id": 1}


@local_handler.register(event_name="user.*")
async def send_welcome_mail(event: Event) -> None:
    name, payload = event  # an event is a (name, payload) tuple
    print(f"{name}: welcome mail to user {payload['id']}")
    welcomed.append(payload["id"])
