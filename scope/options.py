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
