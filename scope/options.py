"""typer options built from pydantic models: choices, ranges, defaults and help in one place.

A library's option set is a pydantic model whose fields carry a ``description`` (the help
line), a default and ``ge``/``le`` bounds. :func:`model_options` turns chosen fields into typer
parameters and :func:`with_options` adds them to a command, which receives them as keyword
arguments; adding a field (or a preset to a table of choices) then needs no CLI edit.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

import annotated_types
import typer
from pydantic import BaseModel


def choice_enum(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A StrEnum whose members are ``values`` (typer shows them as the option's choices)."""
    return StrEnum(name, {v: v for v in values})


def model_options(
    model: type[BaseModel] | type,
    names: Sequence[str],
    *,
    choices: Mapping[str, Iterable[str]] | None = None,
    flags: Mapping[str, str] | None = None,
    unset: bool = False,
) -> list[inspect.Parameter]:
    """typer parameters for the fields ``names`` of ``model`` (a pydantic model or dataclass).

    ``choices`` gives the allowed values of ``str`` fields checked against a table (e.g. the
    presets); ``Literal`` fields get theirs from the type. ``flags`` spells an option's names,
    space-separated (e.g. ``"--workers -j"``; a bool's default is ``--name/--no-name``). With
    ``unset`` every option defaults to None ("not given", the model's default applies) and the
    help says the model's default.
    """
    return [
        _parameter(model, name, (choices or {}).get(name), (flags or {}).get(name), unset)
        for name in names
    ]


def _parameter(
    model: type[BaseModel] | type,
    name: str,
    values: Iterable[str] | None,
    flag: str | None,
    unset: bool,
) -> inspect.Parameter:
    # a BaseModel's fields, or a pydantic dataclass's
    field = (getattr(model, "model_fields", None) or model.__pydantic_fields__)[name]
    base = _without_none(field.annotation)
    label = "".join(part.title() for part in name.split("_"))
    if values is not None:
        base = choice_enum(label, values)
    elif typing.get_origin(base) is Literal:
        base = choice_enum(label, typing.get_args(base))
    default = field.default
    help_text = field.description or ""
    if unset and default is not None and default is not False:
        help_text = f"{help_text.rstrip('.')} (default {default})."
    kwargs: dict[str, Any] = {"help": help_text}
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            kwargs["min"] = bound.ge
        elif isinstance(bound, annotated_types.Le):
            kwargs["max"] = bound.le
    decls = flag.split() if flag else []
    if base is bool and not decls:
        dash = name.replace("_", "-")
        decls = [f"--{dash}/--no-{dash}"]
    option = typer.Option(*decls, **kwargs)
    value = None if unset else (base(default) if isinstance(base, type(StrEnum)) else default)
    annotation = Annotated[base | None if value is None else base, option]  # type: ignore[operator]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation
    )


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def with_options(options: Sequence[inspect.Parameter]) -> Callable[[Callable], Callable]:
    """Give a command ``def cmd(arg, ..., **options)`` the parameters ``options``.

    They follow the command's own required parameters and precede its own options, and
    reach the command in ``**options``.
    """

    def decorate(func: Callable) -> Callable:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        required = [p for p in own if p.default is inspect.Parameter.empty]
        rest = [p for p in own if p.default is not inspect.Parameter.empty]
        params = [*required, *options, *rest]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            return func(**kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def parse_assignments(items: Sequence[str] | None, model: type, *, option: str) -> dict[str, Any]:
    """``["min_score=0.5", ...]`` given to ``option`` → keyword values for ``model``.

    ``model`` is a pydantic model or pydantic dataclass.

    Names and types come from the model's fields (bool: true/false/yes/no/1/0; int; float);
    ranges are checked when the model is made (:func:`build_model`). One-line
    :class:`~hardware_profiles.errors.ScopeError` for an unknown name or an unreadable value.
    """
    from hardware_profiles.errors import ScopeError

    fields = getattr(model, "model_fields", None) or model.__pydantic_fields__
    values: dict[str, Any] = {}
    for item in items or []:
        name, _, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if name not in fields or not text:
            raise ScopeError(
                f"{option} {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}"
            )
        kind = _without_none(fields[name].annotation)
        if kind is bool:
            if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ScopeError(f"{option} {item!r}: {text!r} is not true or false")
            values[name] = text.lower() in ("1", "true", "yes")
            continue
        try:
            values[name] = int(text) if kind is int else float(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ScopeError(f"{option} {item!r}: {text!r} is not {what}") from None
    return values


def build_model(
    model: type[BaseModel],
    typed: Mapping[str, Any],
    items: Sequence[str] | None,
    *,
    flags: Mapping[str, str],
    option: str,
) -> BaseModel:
    """``model`` from a command's typed options and its ``NAME=VALUE`` list, checked.

    ``typed`` holds the typed options (None: not given; made with ``unset=True``), spelt on
    the command line as ``flags[name]``; ``items`` the values given to ``option``. A value
    given both ways, or refused by the model, is a one-line
    :class:`~hardware_profiles.errors.ScopeError` naming the option as the user typed it.
    """
    from pydantic import ValidationError

    from hardware_profiles.errors import ScopeError

    given = {k: v for k, v in typed.items() if v is not None}
    extra = parse_assignments(items, model, option=option)
    twice = sorted(k for k in set(given) & set(extra) if given[k] != extra[k])
    if twice:
        raise ScopeError(
            f"{twice[0]} is given twice ({flags[twice[0]]} and {option}); give it once"
        )
    try:
        return model(**{**given, **extra})
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e.get("loc") else ""
        where = flags[name] if name in given else f"{option} {name}".rstrip()
        msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ScopeError(f"{where}: {msg}, got {e.get('input')!r}") from None
