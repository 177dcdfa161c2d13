"""The registry: three tables (knowledge, conversation, state) of backends, filled from

1. the built-in declarations in :mod:`storebridge._builtins` (data: import path, aliases, extra, URL
   schemes), imported only when a backend is first created;
2. entry points of installed plugins (groups ``storebridge.knowledge_stores``,
   ``storebridge.conversation_stores``, ``storebridge.state_stores``), also loaded lazily;
3. ``register(name, factory)`` calls at run time.

A plugin never silently replaces a built-in: the built-in wins and a :class:`PluginConflictWarning`
says so. ``register(..., replace=True)`` is the explicit way to override a name in code.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import (
    BackendNotAvailableError,
    BackendNotImplementedError,
    ConfigurationError,
    UnknownBackendError,
)
from .urls import StoreURL, mask_secrets, parse_url

Kind = Literal["knowledge", "conversation", "state"]
Flavour = Literal["sync", "async"]
KINDS: tuple[Kind, ...] = ("knowledge", "conversation", "state")


class PluginConflictWarning(UserWarning):
    """A plugin's entry point uses a name that is already taken; the existing backend was kept."""


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend, as data.

    ``target`` is ``"module:attribute"`` (imported on first use) for built-ins and plugins; a run-time
    ``register()`` gives a ``factory`` instead. A built-in with neither is *planned*: declared so the
    whole map is visible, but not shipped yet.
    """

    name: str
    kind: Kind
    target: str | None = None
    aliases: tuple[str, ...] = ()
    extra: str | None = None
    requires: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    flavour: Flavour = "sync"
    description: str = ""
    origin: str = "builtin"  # "builtin", "plugin:<distribution>", or "runtime"
    factory: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @property
    def implemented(self) -> bool:
        return self.target is not None or self.factory is not None

    @property
    def install_hint(self) -> str:
        return f'pip install "storebridge[{self.extra}]"' if self.extra else "pip install storebridge"

    def missing_requirements(self) -> list[str]:
        """Client libraries this backend needs that are not installed (checked without importing them)."""
        import importlib.util  # only when a backend is looked up: keeps `import storebridge` light

        missing = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing


def normalize_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UnknownBackendError(f"backend name must be a non-empty string, got {name!r}")
    return name.strip().lower().replace("-", "_")


class StoreRegistry:
    """A thread-safe table of one kind of backend: ``register``, ``create``, ``list_registered``,
    ``list_aliases``; plus URL lookup and both flavours of every backend."""

    def __init__(self, kind: Kind, entry_point_group: str, builtins: Iterable[BackendSpec] = ()) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._lock = threading.RLock()
        self._specs: dict[str, BackendSpec] = {}
        self._aliases: dict[str, str] = {}
        self._loaded: dict[str, Callable[..., Any]] = {}
        self._entry_points_loaded = False
        for spec in builtins:
            self._add(spec, replace_existing=False)

    def __repr__(self) -> str:
        return f"<StoreRegistry {self.kind}: {len(self._specs)} backends>"

    # -- registration ----------------------------------------------------------------------------------
    def _add(self, spec: BackendSpec, *, replace_existing: bool) -> None:
        names = [spec.name, *spec.aliases]
        with self._lock:
            if not replace_existing:
                taken = [n for n in names if n in self._specs or n in self._aliases]
                if taken:
                    raise ConfigurationError(
                        f"{self.kind} backend name(s) {taken} already registered; pass replace=True to override"
                    )
            else:
                self._remove(spec.name)
                for alias in spec.aliases:
                    if alias in self._specs:
                        self._remove(alias)
            self._specs[spec.name] = spec
            self._loaded.pop(spec.name, None)
            for alias in spec.aliases:
                self._aliases[alias] = spec.name

    def _remove(self, name: str) -> None:
        old = self._specs.pop(name, None)
        self._aliases.pop(name, None)
        if old is not None:
            for alias in old.aliases:
                self._aliases.pop(alias, None)

    def register(self, name: str, factory: Callable[..., Any] | str, *, aliases: Iterable[str] = (),
                 replace: bool = False, schemes: Iterable[str] = (), flavour: Flavour | None = None,
                 description: str = "") -> None:
        """Register a backend. ``factory`` is a callable returning a store (a class works) or an import
        string ``"module:attribute"`` loaded on first use. Taking an existing name needs ``replace=True``."""
        canonical = normalize_name(name)
        is_target = isinstance(factory, str)
        if not is_target and not callable(factory):
            raise ConfigurationError(f"factory for {name!r} must be callable or 'module:attribute'")
        spec = BackendSpec(
            name=canonical,
            kind=self.kind,
            target=factory if isinstance(factory, str) else None,
            factory=None if isinstance(factory, str) else factory,
            aliases=tuple(normalize_name(a) for a in aliases),
            schemes=tuple(s.lower() for s in schemes),
            flavour=flavour or _guess_flavour(factory),
            description=description,
            origin="runtime",
        )
        self._ensure_entry_points()
        self._add(spec, replace_existing=replace)

    def unregister(self, name: str) -> None:
        with self._lock:
            canonical = self.resolve(name)
            self._remove(canonical)
            self._loaded.pop(canonical, None)

    def _ensure_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        with self._lock:
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_point_group):
                name = normalize_name(ep.name)
                dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
                if name in self._specs or name in self._aliases:
                    existing = self._specs.get(name) or self._specs[self._aliases[name]]
                    warnings.warn(
                        f"plugin {dist!r} declares {self.kind} backend {name!r}, which is already provided "
                        f"({existing.origin}); the existing backend wins. Register the plugin under another "
                        f"name, or call register({name!r}, ..., replace=True) to choose it explicitly.",
                        PluginConflictWarning,
                        stacklevel=3,
                    )
                    continue
                self._specs[name] = BackendSpec(name=name, kind=self.kind, target=ep.value, origin=f"plugin:{dist}")

    # -- lookup ----------------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """The canonical name for a name or alias; :class:`UnknownBackendError` lists what exists."""
        key = normalize_name(name)
        self._ensure_entry_points()
        with self._lock:
            if key in self._specs:
                return key
            if key in self._aliases:
                return self._aliases[key]
            known = ", ".join(sorted(self._specs))
            aliases = ", ".join(f"{a}->{c}" for a, c in sorted(self._aliases.items()))
        raise UnknownBackendError(
            f"unknown {self.kind} backend {name!r}. Registered: {known}. Aliases: {aliases or 'none'}."
        )

    def spec(self, name: str) -> BackendSpec:
        canonical = self.resolve(name)
        with self._lock:
            return self._specs[canonical]

    def specs(self) -> list[BackendSpec]:
        self._ensure_entry_points()
        with self._lock:
            return [self._specs[n] for n in sorted(self._specs)]

    def list_registered(self) -> list[str]:
        """Every backend name (built in, planned, plugins, registered at run time), sorted."""
        self._ensure_entry_points()
        with self._lock:
            return sorted(self._specs)

    def list_aliases(self) -> dict[str, str]:
        """Alias -> canonical name."""
        self._ensure_entry_points()
        with self._lock:
            return dict(sorted(self._aliases.items()))

    def list_available(self) -> list[str]:
        """Backends that are implemented and whose client libraries are installed."""
        return [s.name for s in self.specs() if s.implemented and not s.missing_requirements()]

    def __contains__(self, name: object) -> bool:
        try:
            self.resolve(str(name))
        except UnknownBackendError:
            return False
        return True

    # -- creation --------------------------------------------------------------------------------------
    def load(self, name: str) -> Callable[..., Any]:
        """The backend's factory (class or function), importing its module on first use."""
        spec = self.spec(name)
        with self._lock:
            cached = self._loaded.get(spec.name)
        if cached is not None:
            return cached
        if spec.factory is not None:
            return spec.factory
        if spec.target is None:
            raise BackendNotImplementedError(
                f"the {self.kind} backend {spec.name!r} is declared but not shipped in this version of "
                f"storebridge yet. Usable now: {', '.join(self.list_available())}."
            )
        missing = spec.missing_requirements()
        if missing:
            raise BackendNotAvailableError(
                f"the {self.kind} backend {spec.name!r} needs {', '.join(missing)}, which is not installed: "
                f"run {spec.install_hint}"
            )
        module_name, _, attribute = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name == "storebridge" or (exc.name or "").startswith("storebridge."):
                raise  # our own module is broken or missing: a bug, not a missing client library
            raise BackendNotAvailableError(
                f"the {self.kind} backend {spec.name!r} could not be imported ({exc}); run {spec.install_hint}"
            ) from exc
        found: Any = module
        for part in filter(None, attribute.split(".")):
            found = getattr(found, part)
        if not callable(found):
            raise BackendNotAvailableError(f"{spec.target!r} is not a callable store factory")
        factory: Callable[..., Any] = found
        with self._lock:
            self._loaded[spec.name] = factory
        return factory

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """A new store of backend ``name`` (or an alias), in the backend's native flavour."""
        return self.load(name)(**kwargs)

    def create_sync(self, name: str, /, **kwargs: Any) -> Any:
        """A new store with the sync interface (derived through the bridge if the backend is async)."""
        return self.create(name, **kwargs).as_sync()

    def create_async(self, name: str, /, **kwargs: Any) -> Any:
        """A new store with the async interface (derived through the bridge if the backend is sync)."""
        return self.create(name, **kwargs).as_async()

    # -- URLs ------------------------------------------------------------------------------------------
    def scheme_map(self) -> dict[str, str]:
        """URL scheme -> canonical backend name, for every backend that declares schemes."""
        table: dict[str, str] = {}
        for spec in self.specs():
            for scheme in spec.schemes:
                table.setdefault(scheme, spec.name)
        return table

    def backend_for_url(self, url: str | StoreURL) -> str:
        parsed = parse_url(url)
        table = self.scheme_map()
        for candidate in (parsed.full_scheme, parsed.scheme):
            if candidate in table:
                return table[candidate]
        raise UnknownBackendError(
            f"no {self.kind} backend handles URLs starting {parsed.full_scheme}:// ({mask_secrets(parsed)}). "
            f"Known schemes: {', '.join(sorted(table))}."
        )

    def from_url(self, url: str | StoreURL, /, **kwargs: Any) -> Any:
        """A new store chosen by the URL's scheme; the URL is passed to it as ``url=``."""
        parsed = parse_url(url)
        name = self.backend_for_url(parsed)
        return self.create(name, url=parsed.render(reveal=True), **kwargs)


def _guess_flavour(factory: Any) -> Flavour:
    from ._base import AsyncStore

    return "async" if isinstance(factory, type) and issubclass(factory, AsyncStore) else "sync"


__all__ = ["KINDS", "BackendSpec", "Kind", "PluginConflictWarning", "StoreRegistry", "normalize_name"]
