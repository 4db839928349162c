"""Command-line options made from dataclass fields, so a setting is declared once.

A field with `metadata["help"]` is an option: `curate train` makes one of every `TrainConfig`
field, `curate build` and `curate experiment` one of every field of each registered regime's
settings. The option's name is `--` and the field name with dashes (or `metadata["option"]`);
its default on the command line is None, "not given", so the dataclass's own default applies
and is shown in the help. Tuples are given comma-separated.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Iterable, Optional

import typer

from curate.curation.errors import UserError

SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def option_fields(settings_type: type | None) -> list[dataclasses.Field]:
    """The fields of a settings dataclass that are command-line options (those with help text)."""
    if settings_type is None:
        return []
    return [field for field in dataclasses.fields(settings_type) if "help" in field.metadata]


def parameter_name(field: dataclasses.Field) -> str:
    """The Python name of the field's option (`--teacher-model` -> `teacher_model`)."""
    return field.metadata.get("option", field.name)


def option_name(field: dataclasses.Field) -> str:
    return "--" + parameter_name(field).replace("_", "-")


def _kind(field: dataclasses.Field) -> tuple[type, bool]:
    """The scalar type of a field and whether it is a tuple of them (annotations are strings here)."""
    annotation = getattr(field.type, "__name__", str(field.type)).replace(" | None", "").replace("Optional[", "").rstrip("]")
    many = annotation.startswith("tuple[")
    name = annotation.removeprefix("tuple[").split(",")[0].strip() if many else annotation
    if name not in SCALARS:
        raise TypeError(f"setting {field.name}: {field.type} is not an option type (int, float, str, bool, optional or a tuple of one)")
    return SCALARS[name], many


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def option_parameter(field: dataclasses.Field, help_prefix: str = "", show_default: bool = True) -> inspect.Parameter:
    """A keyword parameter for Typer whose default None means "not given on the command line"; the help
    shows the field's default unless another layer (a trainer preset) decides it."""
    kind, many = _kind(field)
    default = _default(field)
    shown = ",".join(map(str, default)) if many and default is not None else default
    help_text = help_prefix + field.metadata["help"] + (" Comma-separated." if many else "")
    show = False if not show_default or shown is None or shown == "" else str(shown)
    if kind is bool and not many:
        name = option_name(field)
        declaration = typer.Option(None, f"{name}/--no-{name[2:]}", help=help_text, show_default=show)
        annotation: Any = Optional[bool]
    else:
        declaration = typer.Option(None, option_name(field), help=help_text, show_default=show)
        annotation = Optional[str] if many else Optional[kind]
    return inspect.Parameter(parameter_name(field), inspect.Parameter.KEYWORD_ONLY, default=declaration, annotation=annotation)


def parse_value(field: dataclasses.Field, value: Any) -> Any:
    """A value given for `field` (from Typer, or text from KEY=VALUE) as the field's type."""
    kind, many = _kind(field)
    try:
        if many:
            parts = value.split(",") if isinstance(value, str) else value
            return tuple(kind(part.strip()) for part in parts if str(part).strip())
        if kind is bool and isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes")
        return kind(value)
    except ValueError:
        raise UserError(f"{option_name(field)} takes {'comma-separated ' if many else ''}{kind.__name__} values, not {value!r}") from None


def given_values(fields: Iterable[dataclasses.Field], values: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line, by field name, typed as their fields."""
    return {
        field.name: parse_value(field, values[parameter_name(field)])
        for field in fields
        if values.get(parameter_name(field)) is not None
    }


def command(function: Callable[..., Any], parameters: list[inspect.Parameter], doc: str | None) -> Callable[..., Any]:
    """`function(**values)` as a Typer command with exactly `parameters` (made at run time)."""

    def entry(**values: Any) -> Any:
        return function(**values)

    entry.__signature__ = inspect.Signature(parameters)
    entry.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    entry.__doc__ = doc
    return entry
