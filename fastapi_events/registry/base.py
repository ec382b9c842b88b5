"""A mapping of event name to the pydantic model that validates its payload."""

from __future__ import annotations

from collections import UserDict
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._names import event_name_str
from ..errors import MissingEventNameDuringRegistration
from ..typing import EventName

SchemaT = TypeVar("SchemaT", bound=type)


class BaseEventPayloadSchemaRegistry(UserDict):  # type: ignore[type-arg]
    """Keys are event names as strings (``Enum`` members by value), values are pydantic model classes."""

    @overload
    def register(self, _schema: SchemaT, event_name: EventName | None = None) -> SchemaT: ...

    @overload
    def register(self, _schema: None = None, event_name: EventName | None = None) -> Callable[[SchemaT], SchemaT]: ...

    def register(self, _schema: Any = None, event_name: EventName | None = None) -> Any:
        """Register a payload schema, as ``@registry.register``, ``@registry.register(event_name=...)`` or a call."""

        def decorator(schema: SchemaT) -> SchemaT:
            name = event_name if event_name is not None else getattr(schema, "__event_name__", None)
            if name is None:
                raise MissingEventNameDuringRegistration(
                    f"cannot register {schema.__qualname__}: pass event_name= or define __event_name__ on it"
                )
            self.data[event_name_str(name)] = schema
            return schema

        if _schema is None:
            return decorator
        return decorator(_schema)

    def __getitem__(self, key: Any) -> Any:
        return self.data[event_name_str(key)]

    def __contains__(self, key: object) -> bool:
        return event_name_str(key) in self.data

    def schema_for(self, event_name: Any) -> type | None:
        """The schema registered for ``event_name`` (``str`` or ``Enum``), or ``None``."""
        found: type | None = self.data.get(event_name_str(event_name))
        return found


__all__ = ["BaseEventPayloadSchemaRegistry"]
