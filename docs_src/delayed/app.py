import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastapi_events import EventHandlerASGIMiddleware, EventMeta, dispatch, event_meta
from fastapi_events.handlers.local import local_handler
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.typing import Event


class Base(DeclarativeBase):
    pass


class Reservation(Base):
    __tablename__ = "reservations"
    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(default="held")


engine = create_async_engine(os.environ.get("DATABASE_URL", "postgresql+asyncpg://app@db/app"))  # or SQLite
sessions = async_sessionmaker(engine)
outbox = SQLAlchemyOutbox(engine)
HOLD = timedelta(seconds=float(os.environ.get("HOLD_SECONDS", 15 * 60)))  # or seconds: delay=900.0
expired: list[tuple[int, str]] = []


@local_handler.register(event_name="reservation.expire")
async def expire(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
    # Runs at the due time (not before; about a second after at most), in whichever process relays it.
    async with sessions() as session, session.begin():
        reservation = await session.get(Reservation, event[1]["id"])
        if reservation is not None and reservation.state == "held":
            reservation.state = "expired"
            expired.append((reservation.id, meta.id))  # meta.id is the caller's id: "expire-<id>"


async def get_session() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:  # Alembic in a real app
        await connection.run_sync(Base.metadata.create_all)
    yield


app = FastAPI(lifespan=lifespan)
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler], outbox=outbox)


@app.post("/reservations/{reservation_id}")
async def hold(reservation_id: int, session: AsyncSession = Depends(get_session)) -> dict[str, int]:
    session.add(Reservation(id=reservation_id))
    expire_id = f"expire-{reservation_id}"  # while it is pending, a dispatch with the same id is ignored
    dispatch("reservation.expire", {"id": reservation_id}, session=session, delay=HOLD, event_id=expire_id)
    digest = datetime(2030, 1, 1, 9, tzinfo=timezone.utc)  # a point in time: a timezone-aware datetime
    dispatch("reservation.digest", {"id": reservation_id}, session=session, at=digest)
    await session.commit()  # rolled back instead: neither event is ever handled
    return {"id": reservation_id}


@app.post("/reservations/{reservation_id}/confirm")
async def confirm(reservation_id: int, session: AsyncSession = Depends(get_session)) -> dict[str, int]:
    reservation = await session.get(Reservation, reservation_id)
    assert reservation is not None
    reservation.state = "confirmed"
    outbox.cancel(session, f"expire-{reservation_id}")  # applied if (and only if) this commit succeeds
    await session.commit()
    return {"id": reservation_id}


@app.get("/reservations/{reservation_id}")
async def show(reservation_id: int, session: AsyncSession = Depends(get_session)) -> dict[str, str]:
    reservation = await session.get(Reservation, reservation_id)
    return {"state": reservation.state if reservation else "unknown"}
