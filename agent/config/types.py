"""What configuration models are made of: the :class:`ConfigModel` base and reusable value types.

A channel plugin, a freshness source type and the core declare their settings as subclasses of
:class:`ConfigModel` whose fields use plain types (``str``, ``int``, ``float``, ``bool``,
``Literal[...]``, nested models) or the annotated types below. :mod:`agent.config.engine`
validates them and words every problem itself: a type's own message is the text of
:func:`problem` (never the rejected value, which may be a secret after ``${VAR}`` expansion).

Validators read the validation context the engine passes: ``base_dir`` (relative paths),
``regions`` (the channel's), ``path`` (the section's key path, for messages) and ``written``
(how YAML wrote each number or boolean, so a ``str`` field given ``0123`` gets "0123").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from agent.config.durations import DURATION_HINT, parse_duration
from agent.config.problems import unknown_name

URL_HINT = "must be an http(s) URL with a host, like https://example.com/path"
INT_LIST_HINT = "must be a list of integers (or a comma-separated string of them)"


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


class _FileGiven:
    """``<key>_file`` was given for a secret field."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _BothGiven:
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
    if isinstance(value, str | _FileGiven | _BothGiven):
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
    data[name] = _BothGiven() if data.get(name) is not None else _FileGiven(file_value)


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


# --- durations ------------------------------------------------------------------------------

def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise problem(f"must be {DURATION_HINT}") from None


def _more_than_zero(value: float) -> float:
    if value <= 0:
        raise problem("must be more than 0")
    return value


_DURATION_SCHEMA = {"anyOf": [{"type": "string", "pattern": r"^((\d+)(y|w|d|h|m|s|ms))+$"},
                              {"const": 0}],
                    "description": DURATION_HINT}
# Seconds, written like Prometheus durations ("30s", "5m", "1h30m", "365d"); 0 needs no unit.
Duration = Annotated[float, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
# A Duration that must be more than 0.
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_more_than_zero),
                             WithJsonSchema(_DURATION_SCHEMA)]


# --- URLs -----------------------------------------------------------------------------------

def valid_url(text: str) -> bool:
    if any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _url(value: Any) -> str:
    if not isinstance(value, str) or not valid_url(value):
        raise problem(URL_HINT)
    return value


def _regional_url(value: Any, info: ValidationInfo) -> dict[str, str]:
    regions: tuple[str, ...] = tuple(context(info).get("regions", ()))
    if not isinstance(value, dict):
        url = _url(value)
        return {region: url for region in regions or ("",)}
    if not regions:
        raise problem("must be a URL (this channel has no regions)")
    for region in value:
        if region not in regions:
            raise problem(unknown_name("region", str(region), regions), at=str(region))
    missing = [region for region in regions if region not in value]
    if missing:
        raise problem(f"has no URL for region {', '.join(missing)} "
                      f"(give one for each of {', '.join(regions)})")
    return {region: value[region] for region in regions}


_URL_SCHEMA = {"type": "string", "format": "uri", "pattern": "^https?://"}
# An http(s) URL with a host.
Url = Annotated[str, BeforeValidator(_url), WithJsonSchema(_URL_SCHEMA)]
# One URL for every region of the channel, or a mapping region -> URL (a partial mapping is
# completed from the field's default); becomes ``dict[region, url]`` ({"": url} without regions).
RegionalUrl = Annotated[
    dict[str, Url], BeforeValidator(_regional_url), RegionalInput(),
    WithJsonSchema({"anyOf": [_URL_SCHEMA, {"type": "object",
                                            "additionalProperties": _URL_SCHEMA}]})]


# --- paths and secrets ----------------------------------------------------------------------

def resolve_path(text: Any, info: ValidationInfo, *, instead_of: str = "") -> Path:
    """A file path; a relative one is relative to the configuration file's directory."""
    if not isinstance(text, str) or not text.strip():
        raise problem("must be a file path", instead_of=instead_of)
    location = Path(text.strip()).expanduser()
    if location.is_absolute():
        return location
    return Path(context(info).get("base_dir") or Path.cwd()) / location


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        value = str(value)
    return resolve_path(value, info)


_STRING = WithJsonSchema({"type": "string"})
# A file path; relative paths resolve against the configuration file's directory.
FilePath = Annotated[Path, BeforeValidator(_path), TextInput(), _STRING]


def _secret(read_now: bool):  # noqa: ANN202 - a validator
    def validate(value: Any, info: ValidationInfo) -> Any:
        from agent.channel import MissingSecret, Secret, SecretRef

        name = info.field_name or ""
        file_key = f"{name}_file"
        source = join(context(info).get("path", ""), name)
        if isinstance(value, _BothGiven):
            raise problem(f"give either {name} or {name}_file, not both", instead_of=file_key)
        if isinstance(value, SecretRef) and not read_now:
            return value  # resolved already: an inventory row's (agent/inventory/credentials.py)
        if isinstance(value, _FileGiven):
            given = str(value.value) if isinstance(value.value, Path) else value.value
            ref = SecretRef(path=resolve_path(as_text(given, None), info, instead_of=file_key),
                            source=f"{source}_file")
            if not read_now:  # read at check time: the file may appear later
                return ref
            try:
                return ref.read()
            except MissingSecret as exc:
                raise problem(exc.problem, instead_of=file_key) from None
        if not isinstance(value, str):
            raise problem("must be a string")
        if not value.strip():
            raise problem("must not be empty")
        secret = Secret(value.strip())
        return secret if read_now else SecretRef(value=secret, source=source)

    return validate


# A secret: ``<key>: value`` (usually ``${VAR}``) or ``<key>_file: path``, read when the
# configuration is loaded -> agent.channel.Secret.
SecretValue = Annotated[Any, BeforeValidator(_secret(read_now=True)), SecretInput(), _STRING]
# Like SecretValue, but a file is read at each use (it may be replaced or appear later)
# -> agent.channel.SecretRef.
SecretReference = Annotated[Any, BeforeValidator(_secret(read_now=False)), SecretInput(),
                            _STRING]


# --- numbers --------------------------------------------------------------------------------

_DIGITS = re.compile(r"[+-]?\d+")


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    raise problem("must be an integer")


def _int_list(value: Any) -> Any:
    if isinstance(value, str):  # e.g. "${PROFILES}" with PROFILES="123,456"
        parts = [part for part in re.split(r"[,\s]+", value) if part]
        if not all(_DIGITS.fullmatch(part) for part in parts):
            raise problem(INT_LIST_HINT)
        return [int(part) for part in parts]
    if not isinstance(value, list):
        raise problem(INT_LIST_HINT)
    return value


# An integer (not a boolean); text of digits is accepted, for ``${VAR}``.
Int = Annotated[int, BeforeValidator(_int)]
# A list of integers, or one string of them separated by commas or spaces.
IntList = Annotated[list[Int], BeforeValidator(_int_list), WithJsonSchema({"anyOf": [
    {"type": "array", "items": {"type": "integer"}}, {"type": "string"}]})]

__all__ = ["ConfigModel", "Duration", "FilePath", "Int", "IntList", "PositiveDuration",
           "RegionalUrl", "SecretReference", "SecretValue", "Url", "problem"]
