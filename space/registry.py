"""Name -> object registries for the pluggable parts (engines, bandit policies, selection rules, verifiers).

    ENGINES = Registry("engine kind", missing=ValueError)

    @ENGINES.register("vllm")
    class VLLMEngine: ...

    ENGINES.get("vllm")        # unknown names raise `missing` listing the known ones
    ENGINES.names()            # sorted
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered objects of one kind; a second registration under a name is refused."""

    def __init__(self, kind: str, missing: type[Exception] = KeyError, known_label: str = "known"):
        self.kind, self.missing, self.known_label = kind, missing, known_label
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise self.missing(f"unknown {self.kind} {name!r}; {self.known_label}: {self.names()}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
