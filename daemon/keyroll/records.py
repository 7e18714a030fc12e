"""Typed, optionally frozen records: what keyroll uses instead of dataclasses.

`@dataclass` writes and exec()s Python source for every method of every class
it decorates: with the classes `keyroll status` needs, that alone cost more
than the whole interpreter start-up (~40 ms here).  `@record` gives the same
typed constructor (mypy sees it through `dataclass_transform`), repr, equality,
hashing and immutability from shared generic methods, at the cost of a plain
class statement.  `fields`, `asdict` and `replace` work as in `dataclasses`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_options: object) -> Callable[[Any], Any]:
        return lambda decorator: decorator


MISSING: Any = type("MISSING", (), {"__repr__": lambda self: "MISSING"})()


class Field:
    """One field of a record: its name, default (or factory) and metadata."""

    __slots__ = ("default", "default_factory", "metadata", "name")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Callable[[], Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.metadata: Mapping[str, Any] = metadata or {}

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """A field with a default (or a factory for mutable defaults) and metadata."""
    return Field(default, default_factory, metadata)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    specs: tuple[Field, ...] = type(self).__record_fields__
    if len(args) > len(specs):
        raise TypeError(f"{type(self).__name__}() takes {len(specs)} positional arguments, got {len(args)}")
    values = dict(zip((f.name for f in specs), args, strict=False))
    for name, value in kwargs.items():
        if name in values:
            raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
        values[name] = value
    setter = object.__setattr__
    for spec in specs:
        if spec.name in values:
            setter(self, spec.name, values.pop(spec.name))
        elif spec.default_factory is not None:
            setter(self, spec.name, spec.default_factory())
        elif spec.default is not MISSING:
            setter(self, spec.name, spec.default)
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {spec.name!r}")
    if values:
        raise TypeError(f"{type(self).__name__}() got unexpected arguments {', '.join(values)}")


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in type(self).__record_fields__)
    return f"{type(self).__name__}({shown})"


def _astuple(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in type(self).__record_fields__)


def _eq(self: Any, other: object) -> Any:
    if type(other) is not type(self):
        return NotImplemented
    return _astuple(self) == _astuple(other)


def _hash(self: Any) -> int:
    return hash(_astuple(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Make `cls` a record: a constructor taking its annotated fields (positionally
    or by name), with repr and equality; `frozen=True` adds immutability and hashing."""

    def wrap(cls: type[T]) -> type[T]:
        specs: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            for inherited in getattr(base, "__record_fields__", ()):
                specs[inherited.name] = inherited
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 (no inspect import)
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, MISSING)
            spec = value if isinstance(value, Field) else Field(default=value)
            spec.name = name
            specs[name] = spec
            if isinstance(value, Field):
                if spec.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, spec.default)
        methods: dict[str, Any] = {
            "__record_fields__": tuple(specs.values()),
            "__match_args__": tuple(specs),
            "__init__": _init,
            "__repr__": _repr,
            "__eq__": _eq,
            "__hash__": _hash if frozen else None,
        }
        if frozen:
            methods.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
        for name, method in methods.items():
            setattr(cls, name, method)
        return cls

    return wrap if cls is None else wrap(cls)


def is_record(value: object) -> bool:
    """True for a record instance (not a record class)."""
    return hasattr(type(value), "__record_fields__") and not isinstance(value, type)


def fields(value: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in declaration order."""
    cls = value if isinstance(value, type) else type(value)
    specs: tuple[Field, ...] = getattr(cls, "__record_fields__")  # noqa: B009
    return specs


def asdict(value: Any) -> dict[str, Any]:
    """A record as a dict, records inside it (and in lists, tuples, dicts) converted too."""

    def convert(item: Any) -> Any:
        if is_record(item):
            return {f.name: convert(getattr(item, f.name)) for f in fields(item)}
        if isinstance(item, dict):
            return {key: convert(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(convert(v) for v in item)
        return item

    return convert(value)  # type: ignore[no-any-return]


def replace(value: T, **changes: Any) -> T:
    """A copy of a record with some fields changed."""
    current = {f.name: getattr(value, f.name) for f in fields(value)}
    unknown = set(changes) - set(current)
    if unknown:
        raise TypeError(f"{type(value).__name__} has no field(s) {', '.join(sorted(unknown))}")
    return type(value)(**{**current, **changes})


def names(values: Iterable[Field]) -> list[str]:
    return [f.name for f in values]
