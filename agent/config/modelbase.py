"""The base of every configuration model, and what the engine and the value types share.

:class:`ConfigModel` turns a section as a file (or an inventory row) gives it into what its
fields validate: ``<key>_file`` of a secret field, numbers given for text fields as written,
null as absent, a partial regional mapping completed from the default. Validators read the
validation context the engine passes: ``base_dir`` (relative paths), ``regions`` (the
channel's), ``path`` (the section's key path, for messages) and ``written`` (how YAML wrote
each number or boolean, so a ``str`` field given ``0123`` gets "0123").
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationInfo, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError


def problem(message: str, *, at: str = "", instead_of: str = "") -> PydanticCustomError:
    """An error the engine shows as ``message``. ``at``: under this key of the value (a region
    of a mapping, a field named by a model validator); ``instead_of``: at this sibling key
    (``refresh_token_file`` for a problem with the file of ``refresh_token``)."""
    return PydanticCustomError("config", "{message}",
                               {"message": message, "at": at, "instead_of": instead_of})


def context(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context or {}


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class TextInput:
    """Metadata of a field that takes text: a number or boolean is taken as written."""


class SecretInput(TextInput):
    """Metadata of a secret field: ``<key>`` (the value) or ``<key>_file`` (a path), not both."""


class RegionalInput:
    """Metadata of a regional URL field: a partial mapping is completed from the default."""


class FileGiven:
    """``<key>_file`` was given for a secret field."""

    def __init__(self, value: Any) -> None:
        self.value = value


class BothGiven:
    """``<key>`` and ``<key>_file`` were both given."""


_NOT_A_NUMBER = object()  # stands for a boolean given for a number: pydantic rejects it


class ConfigModel(BaseModel):
    """Base of every configuration model: unknown keys are problems, defaults are validated
    like given values (so ``"365d"`` is a fine default of a :data:`Duration`), and a key given
    as null counts as absent."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False,
                              arbitrary_types_allowed=True, json_schema_extra=lambda s, m:
                              _secret_files_in_schema(s, m))
    # Keys the core reads next to the model's own (a channel's accounts, an account's name).
    core_keys: ClassVar[tuple[str, ...]] = ()
    # Keys that are refused with a message of their own, instead of "unknown key".
    refused_keys: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        written: Mapping[tuple[int, Any], str] = context(info).get("written", {})
        prepared = dict(data)
        for name, (kind, default) in _field_kinds(cls).items():
            if kind == "secret":
                _fold_secret_file(prepared, name)
            value = prepared.get(name)
            if value is None:
                prepared.pop(name, None)
            elif kind in ("text", "secret"):
                prepared[name] = as_text(value, written.get((id(data), name)))
            elif kind == "text_list" and isinstance(value, list):
                prepared[name] = [as_text(item, written.get((id(value), i)))
                                  for i, item in enumerate(value)]
            elif kind == "number" and isinstance(value, bool):
                prepared[name] = _NOT_A_NUMBER
            elif kind == "regional" and isinstance(value, dict) and isinstance(default, dict):
                prepared[name] = {**default, **value}
        return prepared


def as_dict(model: BaseModel) -> dict[str, Any]:
    """A validated model's values as a dict (nested models too); values are not copied."""
    return {name: as_dict(value) if isinstance(value, BaseModel) else value
            for name, value in model.__dict__.items()}


def model_defaults(model: type[BaseModel], *, regions: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values ``model`` gives its fields when a section sets none (None for required
    fields), as :func:`as_dict` would return them."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = optional_of(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            values[name] = model_defaults(annotation, regions=regions)
        elif field.is_required():
            values[name] = None
        else:
            declared = (Annotated[(field.annotation, *field.metadata)] if field.metadata
                        else field.annotation)
            adapter = TypeAdapter(declared)
            values[name] = adapter.validate_python(field.get_default(call_default_factory=True),
                                                   context={"regions": regions})
    return values


def as_text(value: Any, written: str | None) -> Any:
    """A scalar given for a text field: the text YAML read, or a number's digits."""
    if isinstance(value, str | FileGiven | BothGiven):
        return value
    if written is not None:
        return written
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _fold_secret_file(data: dict[str, Any], name: str) -> None:
    file_key = f"{name}_file"
    if file_key not in data:
        return
    file_value = data.pop(file_key)
    if file_value is None:
        return
    data[name] = BothGiven() if data.get(name) is not None else FileGiven(file_value)


@cache
def fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the key that sets them in a file (its alias, if it has one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


@cache
def _field_kinds(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """How :meth:`ConfigModel._prepare` treats each field: (kind, default)."""
    return {key: (_kind(field), field.default) for key, field in fields_by_key(model).items()}


def _kind(field: FieldInfo) -> str:
    metadata = metadata_of(field)
    if any(isinstance(m, SecretInput) for m in metadata):
        return "secret"
    if any(isinstance(m, TextInput) for m in metadata):
        return "text"
    if any(isinstance(m, RegionalInput) for m in metadata):
        return "regional"
    annotation = optional_of(field.annotation)
    if annotation is str:
        return "text"
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        return "text_list"
    if annotation in (int, float):
        return "number"
    return "other"


def optional_of(annotation: Any) -> Any:
    """``X`` of ``X | None``; anything else unchanged."""
    if get_origin(annotation) in (Union, type(int | None)):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def metadata_of(field: FieldInfo) -> list[Any]:
    """A field's Annotated metadata, also when its type is ``Annotated[...] | None``."""
    found = list(field.metadata)
    for arg in get_args(field.annotation):
        found.extend(getattr(arg, "__metadata__", ()))
    return found


def secret_field(field: FieldInfo) -> bool:
    return any(isinstance(m, SecretInput) for m in metadata_of(field))


def _secret_files_in_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """JSON Schema: a secret field also accepts ``<key>_file``; a required one needs either."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    for name, field in model.model_fields.items():
        if not secret_field(field) or name not in properties:
            continue
        properties[f"{name}_file"] = {
            "type": "string", "title": f"{properties[name].get('title', name)} file",
            "description": f"A file holding {name} (relative paths: the config file's dir)"}
        if name in required:
            required.remove(name)
            schema.setdefault("allOf", []).append(
                {"anyOf": [{"required": [name]}, {"required": [f"{name}_file"]}]})
    if not required:
        schema.pop("required", None)
    for name in model.core_keys:  # read by the core; described by its schema builder
        properties.setdefault(name, {})
