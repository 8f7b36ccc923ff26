"""Loading strategies: user modules (by module path or ``.py`` file) and validated parameters.

A LiveTrader names its strategy and gives parameters as JSON; the code may come from the image, a
package, or a ConfigMap mounted as a file (``/etc/backtest-kit/strategies/x.py``). Whatever goes
wrong here (a file that does not exist, a syntax error, an unknown strategy name, a parameter the
strategy's own model refuses) must stop the process with one clear message before the first tick,
not show up an hour later as a stream of tick errors. Errors are :class:`StrategyLoadError`
(a ``ConfigurationError``), which the entry point turns into exit code 2.

How a module offers a strategy:

* plain: it calls ``backtest_kit.add_strategy(...)`` when imported; such a strategy takes no
  parameters, so ``--params`` must be empty;
* parametrised: it defines ``STRATEGY`` (the name), ``Params`` (a pydantic model, ideally
  ``extra="forbid"``) and ``register(params)``, which calls ``add_strategy`` with the validated
  ``Params`` instance. Nothing is registered until the runner has validated the parameters.

The built-in example strategies of the engine are plain; :data:`BUILTIN_MODULES` adds the
runner's parametrised example(s), imported only when asked for by name.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from backtest_kit.errors import ConfigurationError

#: Parametrised strategies the runner ships, by strategy name -> module path.
BUILTIN_MODULES: dict[str, str] = {
    "sma-cross": "backtest_kit_runner.example_strategies.sma_cross",
    "momentum": "backtest_kit_runner.example_strategies.momentum",
}

#: Package under which strategy files are imported (so tracebacks and pickles name them).
FILE_MODULE_PACKAGE = "backtest_kit_user"


class StrategyLoadError(ConfigurationError):
    """A strategy module, name or parameter is wrong; the message says which and how."""


@dataclass(frozen=True)
class ParametrisedStrategy:
    """A strategy registered only once its parameters are validated."""

    name: str
    params_model: type[BaseModel]
    register: Callable[[BaseModel], Any]
    module: str


@dataclass(frozen=True)
class LoadedStrategy:
    """The strategy a run uses: its registered name and the parameters it was registered with."""

    name: str
    params: Mapping[str, Any]
    params_model: type[BaseModel] | None
    module: str | None


def load_modules(specs: Iterable[str]) -> list[ModuleType]:
    """Import each ``--load`` entry: a ``.py`` file (or any path) or a dotted module path."""
    return [load_module(spec) for spec in specs]


def load_module(spec: str) -> ModuleType:
    spec = spec.strip()
    if spec.endswith(".py") or "/" in spec or spec.startswith("."):
        return _load_file(Path(spec))
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", spec):
        raise StrategyLoadError(f"--load {spec!r} is neither a .py file nor a dotted module path")
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and spec.startswith(exc.name):
            raise StrategyLoadError(f"--load {spec!r}: no module named {exc.name!r}") from exc
        raise StrategyLoadError(f"--load {spec!r} failed to import: {exc}") from exc
    except ConfigurationError as exc:
        raise StrategyLoadError(f"--load {spec!r}: {exc}") from exc
    except Exception as exc:
        raise StrategyLoadError(f"--load {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise StrategyLoadError(f"--load {str(path)!r}: no such file")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{FILE_MODULE_PACKAGE}.{stem}"
    if name in sys.modules:
        loaded = sys.modules[name]
        if Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
            return loaded
        raise StrategyLoadError(f"--load {str(path)!r}: another file named {path.name} is already loaded")
    loader = importlib.machinery.SourceFileLoader(name, str(path))  # any file name (ConfigMap keys)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None or spec.loader is None:
        raise StrategyLoadError(f"--load {str(path)!r}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise StrategyLoadError(
            f"--load {str(path)!r}: syntax error at line {exc.lineno}: {exc.msg}"
        ) from exc
    except ConfigurationError as exc:
        del sys.modules[name]
        raise StrategyLoadError(f"--load {str(path)!r}: {exc}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise StrategyLoadError(
            f"--load {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def parametrised_strategy(module: ModuleType) -> ParametrisedStrategy | None:
    """The module's ``STRATEGY``/``Params``/``register`` triple, or None for a plain module."""
    register = getattr(module, "register", None)
    if register is None:
        return None
    where = module.__name__
    name = getattr(module, "STRATEGY", None)
    model = getattr(module, "Params", None)
    if not callable(register):
        raise StrategyLoadError(f"module {where}: register must be a function")
    if not isinstance(name, str) or not name:
        raise StrategyLoadError(f"module {where}: defines register() but no STRATEGY name")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise StrategyLoadError(f"module {where}: defines register() but Params is not a pydantic model")
    return ParametrisedStrategy(name, model, register, where)


def resolve_strategy(
    name: str,
    params: Mapping[str, Any],
    modules: Iterable[ModuleType],
    *,
    registered: Callable[[], Iterable[str]],
) -> LoadedStrategy:
    """Find ``name`` among the loaded modules, the built-ins and the registry; validate params.

    ``registered`` lists the strategy names the engine knows (``list_strategies``).
    """
    offers = _offers(name, modules)
    if name in offers:
        return _register_with_params(offers[name], params, registered)
    known = set(registered())
    if name not in known:
        choices = sorted(known | set(offers) | set(BUILTIN_MODULES))
        raise StrategyLoadError(
            f"unknown strategy {name!r}; available: {', '.join(choices) or '(none)'}"
            " (load your own with --load MODULE_OR_FILE)"
        )
    if params:
        raise StrategyLoadError(
            f"strategy {name!r} takes no parameters, but --params gave {', '.join(sorted(params))}; "
            "a parametrised strategy module defines STRATEGY, Params and register(params)"
        )
    return LoadedStrategy(name, {}, None, None)


def _offers(name: str, modules: Iterable[ModuleType]) -> dict[str, ParametrisedStrategy]:
    """The parametrised strategies of ``modules``, plus the built-in one named ``name`` if any."""
    offers: dict[str, ParametrisedStrategy] = {}
    for module in modules:
        offer = parametrised_strategy(module)
        if offer is not None:
            if offer.name in offers:
                first = offers[offer.name].module  # two modules claim one name
                raise StrategyLoadError(f"strategy {offer.name!r} offered by {first} and by {offer.module}")
            offers[offer.name] = offer
    if name not in offers and name in BUILTIN_MODULES:
        offer = parametrised_strategy(load_module(BUILTIN_MODULES[name]))
        if offer is not None:
            offers[name] = offer
    return offers


def parametrised_offer(
    name: str, modules: Iterable[ModuleType], *, registered: Callable[[], Iterable[str]]
) -> ParametrisedStrategy:
    """The parametrised strategy ``name`` (a ``--grid`` varies one); nothing is registered yet."""
    offers = _offers(name, modules)
    if name in offers:
        return offers[name]
    if name in set(registered()):
        raise StrategyLoadError(
            f"strategy {name!r} takes no parameters, so there is no grid to vary; a parametrised "
            "strategy module defines STRATEGY, Params and register(params)"
        )
    choices = sorted(set(offers) | set(BUILTIN_MODULES))
    raise StrategyLoadError(
        f"unknown parametrised strategy {name!r}; available: {', '.join(choices) or '(none)'}"
        " (load your own with --load MODULE_OR_FILE)"
    )


def validate_params(offer: ParametrisedStrategy, params: Mapping[str, Any]) -> BaseModel:
    try:
        return offer.params_model.model_validate(dict(params))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(params)"
            problems.append(f"  {loc}: {err.get('msg', 'invalid')}")
        raise StrategyLoadError(
            f"invalid --params for strategy {offer.name!r} ({offer.module}.Params):\n" + "\n".join(problems)
        ) from None


def _register_with_params(
    offer: ParametrisedStrategy, params: Mapping[str, Any], registered: Callable[[], Iterable[str]]
) -> LoadedStrategy:
    validated = validate_params(offer, params)
    try:
        offer.register(validated)
    except ConfigurationError as exc:
        raise StrategyLoadError(f"strategy {offer.name!r} ({offer.module}.register): {exc}") from exc
    if offer.name not in set(registered()):
        raise StrategyLoadError(f"{offer.module}.register() did not register a strategy named {offer.name!r}")
    return LoadedStrategy(offer.name, validated.model_dump(mode="json"), offer.params_model, offer.module)
