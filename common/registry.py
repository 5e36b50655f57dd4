"""One registry per pluggable family (encoders, fusion heads, strategies, datasets).

``create(name, **kw)`` drops ``None`` keyword arguments so that defaults of the
registered factory apply; an unknown name lists the options and suggests the closest.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from oncofed.common.errors import ConfigError

T = TypeVar("T")


def suggestion(value: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``options``, or ``''``."""
    close = difflib.get_close_matches(value, list(options), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def look_up_option(value: str, options: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``options``, else raise a ``ConfigError``.

    The message lists every option and suggests the closest one.
    """
    opts = sorted(options)
    if value in opts:
        return value
    hint = suggestion(value, opts)
    raise ConfigError(f"Unknown {what} '{value}'. Options: {', '.join(opts)}.{hint}")


class Registry(Generic[T]):
    """Name -> factory mapping for one family of components."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``fn`` under ``name``; a name twice is an error."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self._items[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., T]:
        return self._items[look_up_option(name, self._items, self.family)]

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the entry ``name``; ``None`` keyword arguments are dropped."""
        kw = {k: v for k, v in kwargs.items() if v is not None}
        return self.get(name)(**kw)

    def __contains__(self, name: object) -> bool:
        return name in self._items
