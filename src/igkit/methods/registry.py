"""The attribution methods by name: what each answers, what it costs, what it takes.

A method is a ``MethodSpec`` registered under its name (``register_method``); ``igkit.attribute``
looks it up (``get_method``), checks the options given against the ones it declares
(``MethodSpec.bind``: an unknown option is refused with the list of valid ones, a bad value
with the option's own message), checks that the model's backend can give what the method needs
(``MethodSpec.unsupported``), and only then runs it on a ``MethodContext``. Nothing chooses a
method by an if-chain on its name.

The rule names of Integrated Gradients ("auto", "secant", "gauss_legendre", ...) are accepted
as method names too: each is ``integrated_gradients`` with that ``rule``, so the command line's
one ``--method`` namespace reads ``--method secant`` and ``--method saliency`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.methods.context import MethodContext

__all__ = [
    "FRAMEWORKS",
    "MethodSpec",
    "Option",
    "attribution_methods",
    "get_method",
    "method_names",
    "register_method",
    "resolve_method",
]

FRAMEWORKS = ("torch", "tensorflow", "jax")


@dataclass(frozen=True)
class Option:
    """One option a method takes (``igkit.attribute(..., name=value)``, ``--NAME value``).

    Attributes:
        name: The keyword.
        default: Its value when not given.
        doc: One line saying what it does, for help texts and the refusal of a bad value.
        check: Turns a given value into the one the method uses, or raises ValueError /
            TypeError with what is wrong and what to pass; None accepts anything.
    """

    name: str
    default: Any
    doc: str
    check: Callable[[Any], Any] | None = None

    def value(self, given: Any) -> Any:
        if self.check is None:
            return given
        try:
            return self.check(given)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{self.name}={_shown(given)}: {exc}") from None


def _shown(value: Any) -> str:
    """A value as an error message shows it: an array by its shape and dtype, not its data."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"<array of shape {tuple(shape)}, {dtype}>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


RunFn = Callable[["MethodContext", Mapping[str, Any]], "Result"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method.

    Attributes:
        name: The name ``method=`` takes.
        answers: What the attribution answers, in one line (README's table of methods).
        cost: What one explanation costs in model calls, in words (e.g. "1 gradient",
            "steps gradients per baseline").
        run: ``run(context, options) -> Result`` with the options bound and checked.
        options: The options it declares.
        frameworks: The frameworks it runs on; others are refused by name before any work.
        needs: What the backend must give beyond gradients, by name (e.g. "layers": named
            layers to hook), each with the fix when absent (``why_not``).
        uses_baseline: Whether ``baseline=`` means anything to it (completeness is checked
            against F(x) - F(x') only for methods that have one).
        complete: Whether its attributions add up to F(x) - F(x') (IG, DeepLift, expected
            gradients in the limit): then ``Result.delta`` and ``relative_error`` measure it;
            otherwise they are NaN.
        stochastic: Whether ``seed=`` changes its result.
        why_not: Per framework, the reason (with the fix) it cannot run there, for
            frameworks outside ``frameworks``.
        entry: For a method that is a whole public call of its own
            (``integrated_gradients``): ``entry(model, inputs, **common, **options)`` is called
            instead of ``run``, with the options given (defaults are the entry's own).
        images_only: It works on batches of images only (rank 4: blurs, segments, windows);
            other inputs are refused before the model is called.
    """

    name: str
    answers: str
    cost: str
    run: RunFn
    options: tuple[Option, ...] = ()
    frameworks: tuple[str, ...] = FRAMEWORKS
    uses_baseline: bool = False
    complete: bool = False
    stochastic: bool = False
    why_not: Mapping[str, str] = field(default_factory=dict)
    entry: Callable[..., Result] | None = None
    images_only: bool = False

    def option_names(self) -> list[str]:
        return [o.name for o in self.options]

    def bind(self, given: Mapping[str, Any], *, fill: bool = True) -> dict[str, Any]:
        """The options with values checked and (``fill``) defaults filled in; an unknown one is
        refused with the list of valid ones."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(known) if known else "none"
            raise TypeError(
                f"method={self.name!r} takes no option {', '.join(map(repr, unknown))}; its "
                f"options are: {valid}"
            )
        return {
            name: opt.value(given[name]) if name in given else opt.default
            for name, opt in known.items() if fill or name in given
        }

    def input_problem(self, shape: tuple[int, ...]) -> str | None:
        """Why inputs of this batch shape cannot be explained with this method, or None."""
        if self.images_only and len(shape) != 4:
            return (
                f"method={self.name!r} works on images (a batch of shape (N, C, H, W) or "
                f"(N, H, W, C)); the inputs have shape {shape}: pass images"
            )
        return None

    def unsupported(self, framework: str) -> str | None:
        """Why models of ``framework`` cannot be explained with this method, or None."""
        if framework in self.frameworks:
            return None
        reason = self.why_not.get(framework)
        if reason:
            return reason
        where = " and ".join(self.frameworks)
        return (
            f"method={self.name!r} is implemented for {where} models; this is a {framework} "
            "model"
        )


_METHODS: dict[str, MethodSpec] = {}
#: Names that stand for a method with options set: "secant" -> integrated_gradients(rule=...).
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_method(
    spec: MethodSpec, *, aliases: Mapping[str, Mapping[str, Any]] | None = None
) -> MethodSpec:
    """Registers ``spec`` under its name, and ``aliases`` (name -> options) as shorthands."""
    aliases = aliases or {}
    for name in (spec.name, *aliases):
        if name in _METHODS or name in _ALIASES:
            raise ValueError(f"an attribution method named {name!r} is already registered")
    _METHODS[spec.name] = spec
    for alias, options in aliases.items():
        _ALIASES[alias] = (spec.name, dict(options))
    return spec


def _load() -> None:
    """Imports the modules that register the built-in methods (once)."""
    import igkit.methods.builtin  # noqa: F401


def attribution_methods() -> list[str]:
    """The registered attribution method names, e.g. "integrated_gradients", "saliency"."""
    _load()
    return sorted(_METHODS)


def method_names() -> list[str]:
    """Every name ``method=`` takes: the methods and their shorthands (IG rule names)."""
    _load()
    return sorted(_METHODS) + sorted(a for a in _ALIASES if a not in _METHODS)


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name`` (an IG rule name gives ``integrated_gradients``)."""
    return resolve_method(name, {})[0]


def resolve_method(name: object, options: Mapping[str, Any]) -> tuple[MethodSpec, dict[str, Any]]:
    """The method ``name`` stands for, and ``options`` with what its shorthand sets.

    Raises:
        ValueError: An unknown name (listing the choices), or a shorthand whose option is also
            given explicitly with another value.
    """
    _load()
    if not isinstance(name, str):
        raise TypeError(f"method must be a name (str), got {type(name).__name__}")
    if name in _METHODS:
        return _METHODS[name], dict(options)
    if name in _ALIASES:
        target, implied = _ALIASES[name]
        merged = dict(options)
        for key, value in implied.items():
            if key in merged and merged[key] != value:
                raise ValueError(
                    f"method={name!r} means {target} with {key}={value!r}, but {key}="
                    f"{merged[key]!r} was also given; pass method={target!r} with {key}= only"
                )
            merged[key] = value
        return _METHODS[target], merged
    raise ValueError(
        f"unknown attribution method {name!r}; choose one of {', '.join(method_names())}"
    )


def describe(names: Iterable[str] | None = None) -> list[tuple[str, str, str, str]]:
    """(name, what it answers, cost, frameworks) of each method, for tables and help."""
    _load()
    chosen = sorted(_METHODS) if names is None else list(names)
    return [
        (n, _METHODS[n].answers, _METHODS[n].cost, ", ".join(_METHODS[n].frameworks))
        for n in chosen
    ]
