# test_signup.py
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import capture_events

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])


@app.post("/users")
async def sign_up(user: dict[str, str]) -> dict[str, int]:
    dispatch("user.created", {"user_id": 1, "email": user["email"]})
    return {"user_id": 1}


def test_signup_dispatches_user_created() -> None:
    with capture_events() as events:
        TestClient(app).post("/users", json={"email": "ada@example.com"})
    assert events.names == ["user.created"]
    assert events.payloads("user.created") == [{"user_id": 1, "email": "ada@example.com"}]


def test_the_same_with_the_fixture(captured_events) -> None:  # the pytest plugin's fixture, no import needed
    TestClient(app).post("/users", json={"email": "ada@example.com"})
    assert captured_events.names == ["user.created"]
