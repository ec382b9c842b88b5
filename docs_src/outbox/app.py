import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastapi_events import EventHandlerASGIMiddleware, dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.typing import Event


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)


engine = create_async_engine(os.environ.get("DATABASE_URL", "postgresql+asyncpg://app@db/app"))  # or SQLite
sessions = async_sessionmaker(engine)
outbox = SQLAlchemyOutbox(engine)  # relay=True: this process also delivers what others left behind
shipped: list[int] = []


@local_handler.register(event_name="order.placed")
async def ship(event: Event) -> None:
    shipped.append(event[1]["order_id"])


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


@app.post("/orders/{order_id}")
async def place_order(order_id: int, session: AsyncSession = Depends(get_session)) -> dict[str, int]:
    session.add(Order(id=order_id))
    dispatch("order.placed", {"order_id": order_id}, session=session)  # Session or AsyncSession
    if order_id < 0:
        await session.rollback()  # the event is never handled
    else:
        await session.commit()  # the event is handled once this commit succeeded
    return {"id": order_id}


@app.get("/orders")
async def orders(session: AsyncSession = Depends(get_session)) -> list[int]:
    return list((await session.scalars(sa.select(Order.id))).all())
