"""Name -> object registries for the pluggable parts (engines, bandit policies, selection rules, verifiers).

    ENGINES = Registry("engine kind", missing=ValueError)

    @ENGINES.register("vllm")
    class VLLMEngine: ...

    ENGINES.get("vllm")        # unknown names raise `missing` listing the known ones
    ENGINES.names()            # sorted

    class EngineConfig(BaseModel):
        kind: ENGINES.name_type("auto") = "auto"   # a config field holding a registered name (or "auto")

`name_type` is how configs validate names: the registry is asked when a recipe is validated (so an unknown
name fails at load time, naming the key and the registered names) and when a JSON schema is built (its
`enum` is the registered names, for forms such as Prefect's), never when the config class is defined. No
name list is written twice, and registering a new entry is enough to make it valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic_core import CoreSchema

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

    def name_type(self, *extra: str) -> Any:
        """A pydantic `str` type accepting the registered names and `extra` ones (e.g. "auto"); see the top."""
        check = _NameCheck(self, extra)
        return Annotated[str, AfterValidator(check), check]


class _NameCheck:
    """Validator and JSON-schema hook of `Registry.name_type`: both read the registry when they run."""

    def __init__(self, registry: Registry[Any], extra: tuple[str, ...]) -> None:
        self.registry, self.extra = registry, extra

    def valid_names(self) -> list[str]:
        return [*self.extra, *self.registry.names()]

    def __call__(self, name: str) -> str:
        if name not in self.registry and name not in self.extra:
            raise ValueError(f"unknown {self.registry.kind} {name!r}; {self.registry.known_label}: {self.valid_names()}")
        return name

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {**handler(schema), "enum": self.valid_names()}
