"""Forms from the metadata service's input models: each pydantic `Input` model's fields
become form controls (type, limits, choices, help text from the model), posted values are
converted back (empty → None for optional fields, checkboxes → bool, comma lists → lists),
and validation problems are mapped to their field so the page shows them in place."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from api.errors import BadRequest


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str  # text, number, checkbox, select, textarea, list
    required: bool
    help: str = ""
    choices: list[str] = field(default_factory=list)
    value: Any = None
    error: str = ""
    step: str = "any"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the inner type, whether None is allowed)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(get_args(annotation))
    return annotation, False


def _base(annotation: Any) -> Any:
    # Annotated[...] keeps metadata on the FieldInfo; the raw type is what we switch on.
    while get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        annotation = get_args(annotation)[0]
    return annotation


def fields_of(
    model: type[BaseModel], values: Mapping[str, Any] | None = None, errors: Mapping[str, str] | None = None
) -> list[FormField]:
    values, errors = values or {}, errors or {}
    out = []
    for name, info in model.model_fields.items():
        inner, optional = _unwrap(info.annotation)
        inner = _base(inner)
        choices: list[str] = []
        if get_origin(inner) is Literal:
            kind, choices = "select", [str(c) for c in get_args(inner)]
        elif inner is bool:
            kind = "checkbox"
        elif inner in (int, float):
            kind = "number"
        elif get_origin(inner) is list:
            kind = "list"
        else:
            max_len = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)
            kind = "textarea" if max_len and max_len > 1000 else "text"
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        value = values.get(name, default)
        if kind == "list" and isinstance(value, list):
            value = ", ".join(map(str, value))
        out.append(
            FormField(
                name=name,
                label=name.replace("_", " "),
                kind=kind,
                required=info.is_required() and not optional,
                help=info.description or "",
                choices=choices,
                value=value,
                error=errors.get(name, ""),
                step="1" if inner is int else "any",
            )
        )
    return out


def form_values(model: type[BaseModel], form: Mapping[str, Any]) -> dict[str, Any]:
    """The posted form as the model's input: checkboxes as bools, empty optional fields as
    None, comma-separated lists split; fields the form did not send keep their defaults."""
    data: dict[str, Any] = {}
    for f in fields_of(model):
        raw = form.get(f.name)
        if f.kind == "checkbox":
            data[f.name] = raw is not None and str(raw) not in ("", "0", "false", "off")
        elif f.kind == "list":
            data[f.name] = [x.strip() for x in str(raw or "").split(",") if x.strip()]
        elif raw is None:
            continue
        elif str(raw).strip() == "" and not f.required:
            info = model.model_fields[f.name]
            if _unwrap(info.annotation)[1]:
                data[f.name] = None
        else:
            data[f.name] = str(raw)
    return data


def field_errors(exc: BadRequest) -> dict[str, str]:
    """Validation problems by field name ('' for the form as a whole)."""
    out: dict[str, str] = {}
    for p in exc.details.get("problems", []):
        where = str(p.get("where", "")).split(".")[0]
        out[where] = (out.get(where, "") + " " + str(p.get("problem", ""))).strip()
    if not out:
        out[""] = exc.message
    return out
