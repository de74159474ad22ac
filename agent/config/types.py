"""What configuration models are made of: everything a plugin needs to declare its settings.

A channel plugin, a freshness source type and the core declare their settings as subclasses of
:class:`ConfigModel` whose fields use plain types (``str``, ``int``, ``float``, ``bool``,
``Literal[...]``, nested models) or the annotated value types below. :mod:`agent.config.engine`
validates them and words every problem itself: a type's own message is the text of
:func:`problem` (never the rejected value, which may be a secret after ``${VAR}`` expansion).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ValidationInfo,
    WithJsonSchema,
)

from agent.config.durations import DURATION_HINT, parse_duration
from agent.config.modelbase import (
    BothGiven,
    ConfigModel,
    FileGiven,
    RegionalInput,
    SecretInput,
    TextInput,
    as_dict,
    as_text,
    context,
    join,
    metadata_of,
    model_defaults,
    problem,
    secret_field,
)
from agent.config.problems import unknown_name

URL_HINT = "must be an http(s) URL with a host, like https://example.com/path"
INT_LIST_HINT = "must be a list of integers (or a comma-separated string of them)"


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


# JSON Schema: a ${VAR} reference is accepted wherever the agent accepts one.
_ENV_REFERENCE = {"type": "string", "pattern": r"\$\{"}
_DURATION_SCHEMA = {"anyOf": [{"type": "string", "pattern": r"^((\d+)(y|w|d|h|m|s|ms))+$"},
                              {"const": 0}, _ENV_REFERENCE],
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


_URL_SCHEMA = {"type": "string", "pattern": r"^(https?://|\$\{)"}
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
    return Path(resolve_path_text(text, info, instead_of=instead_of))


def resolve_path_text(text: Any, info: ValidationInfo, *, instead_of: str = "") -> str:
    """:func:`resolve_path` as text (``str`` of the ``Path``). A plain relative path (no
    ``~``, ``.``, ``..`` or doubled slash: what an inventory's 50,000 token files look like)
    is joined as text: pathlib's parsing was a fifth of validating an account."""
    if not isinstance(text, str) or not text.strip():
        raise problem("must be a file path", instead_of=instead_of)
    text = text.strip()
    base = context(info).get("base_dir")
    if isinstance(base, Path) and base.is_absolute() and _PLAIN_RELATIVE.fullmatch(text):
        prefix = str(base)
        return prefix + text if prefix.endswith("/") else f"{prefix}/{text}"  # "/" or "//"
    location = Path(text).expanduser()
    if location.is_absolute():
        return str(location)
    return str(Path(base or Path.cwd()) / location)


# relative, no "~" first, no empty, "." or ".." part, no trailing slash
_PLAIN_RELATIVE = re.compile(r"(?!~)(?!\.\.?(?:/|$))[^/]+(?:/(?!\.\.?(?:/|$))[^/]+)*")


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
        if isinstance(value, BothGiven):
            raise problem(f"give either {name} or {name}_file, not both", instead_of=file_key)
        if isinstance(value, SecretRef) and not read_now:
            return value  # resolved already: an inventory row's (agent/inventory/credentials.py)
        if isinstance(value, FileGiven):
            given = str(value.value) if isinstance(value.value, Path) else value.value
            ref = SecretRef(path=resolve_path_text(as_text(given, None), info,
                                                   instead_of=file_key),
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

# The whole vocabulary of a settings model, and what code reading models needs, from one module.
__all__ = ["ConfigModel", "Duration", "FilePath", "Int", "IntList", "PositiveDuration",
           "RegionalUrl", "SecretReference", "SecretValue", "TextInput", "Url", "as_dict",
           "metadata_of", "model_defaults", "problem", "secret_field"]
