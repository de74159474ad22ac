"""Validating one configuration section against its model, every problem with file:line and path.

The section's tree (:mod:`agent.config.yamltree`) becomes plain data, ``${VAR}`` expanded; pydantic
validates it; each error's ``loc`` is followed through the tree to its line, and its message is
worded here from the error's type and the model's declaration. Pydantic's own messages are
never shown: some of them repeat the rejected value, and after ``${VAR}`` expansion that value
may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from agent.config.modelbase import ConfigModel, fields_by_key, optional_of, secret_field
from agent.config.problems import ProblemList, unknown_name
from agent.config.yamltree import INVALID, Node
from agent.redact import redact

M = TypeVar("M", bound=BaseModel)
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_ENV_INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
BAD_REFERENCE = "invalid ${...} reference: use ${VAR}, ${VAR:-default}, or $$ for a literal $"


class Scope:
    """What validating the sections of one source needs: where problems go, the environment
    for ``${VAR}``, the directory relative paths start from."""

    def __init__(self, problems: ProblemList, environ: Mapping[str, str] | None,
                 base_dir: Path) -> None:
        """``environ`` None: ``$`` is an ordinary character (no ``${VAR}`` expansion)."""
        self.problems = problems
        self.environ = environ
        self.base_dir = base_dir

    def validate(self, model: type[M], node: Node, path: str, *, regions: Iterable[str] = (),
                 core: Iterable[str] = ()) -> M | None:
        """``node`` as a ``model``, keys in ``core`` left out; None when it has problems."""
        if not isinstance(node.value, dict):
            self.problems.add(node.line, path, "must be a mapping")
            return None
        core = tuple(core)
        written: dict[tuple[int, Any], str] = {}
        own = {key: child for key, child in node.value.items() if key not in core}
        data = self.plain(Node(own, node.line), path, written)
        context = {"base_dir": self.base_dir, "regions": tuple(regions), "path": path,
                   "written": written}
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                self._report(model, node, data, path, error, core)
            return None

    def plain(self, node: Node, path: str, written: dict[tuple[int, Any], str]) -> Any:
        """The plain data of a tree, strings expanded; INVALID where that failed (reported)."""
        if isinstance(node.value, dict):
            result = {key: self.plain(child, join_key(path, key), written)
                      for key, child in node.value.items()}
            for key, child in node.value.items():
                _remember_text(written, result, key, result[key], child)
            return result
        if isinstance(node.value, list):
            items = [self.plain(item, f"{path}[{i}]", written)
                     for i, item in enumerate(node.value)]
            for i, (value, item) in enumerate(zip(items, node.value, strict=True)):
                _remember_text(written, items, i, value, item)
            return items
        if isinstance(node.value, str):
            return self.expand(node.value, node.line, path)
        return node.value

    def expand(self, text: str, line: int | None, path: str) -> Any:
        """Replace ``${VAR}``, ``${VAR:-default}`` and ``$$`` in ``text``."""
        failed = False
        environ = self.environ or {}

        def substitute(match: re.Match[str]) -> str:
            nonlocal failed
            if match.group(0) == "$$":
                return "$"
            inner = _ENV_INNER.fullmatch(match.group(1) or "")
            if match.group(1) is None or inner is None:
                self.problems.add(line, path, BAD_REFERENCE)
                failed = True
                return ""
            name, default = inner.group(1), inner.group(2)
            value = environ.get(name)
            if value:
                return value
            if default is not None:
                return default
            if value is None:
                self.problems.add(line, path, f"environment variable {name} is not set "
                                              f"(use ${{{name}:-default}} for a default)")
                failed = True
                return ""
            return value

        if self.environ is None or "$" not in text:
            return text
        result = _ENV_REF.sub(substitute, text)
        return INVALID if failed else result

    def _report(self, model: type[BaseModel], node: Node, data: Any, path: str, error: Any,
                core: tuple[str, ...]) -> None:
        loc = [part for part in error["loc"] if part != "[key]"]
        ctx = error.get("ctx") or {}
        if error["type"] == "config":
            if ctx.get("instead_of") and loc:
                loc[-1] = ctx["instead_of"]
            if ctx.get("at"):
                loc.append(ctx["at"])
        where = path
        for part in loc:
            where = f"{where}[{part}]" if isinstance(part, int) else join_key(where, str(part))
        if _reported(data, loc):  # e.g. an unset ${VAR}: reported once, where it is
            return
        self.problems.add(line_of(node, loc), where, word(model, loc, error, core))


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _remember_text(written: dict[tuple[int, Any], str], container: Any, key: Any, value: Any,
                   node: Node) -> None:
    if node.text is not None and not isinstance(value, str) and value is not INVALID:
        written[(id(container), key)] = node.text


def _reported(data: Any, loc: Iterable[Any]) -> bool:
    """Whether the value at ``loc``, or one containing it, is INVALID (reported already)."""
    for part in loc:
        if data is INVALID:
            return True
        data = _child(data, part)
        if data is _ABSENT:
            return False
    return data is INVALID


def line_of(node: Node, loc: Iterable[Any]) -> int | None:
    """The line of the value at ``loc``; for a key that is not there, its mapping's line."""
    for part in loc:
        child = _child(node.value, part)
        if child is _ABSENT:
            child = _child(node.value, f"{part}_file")  # a secret given as a file
        if child is _ABSENT:
            break
        node = child
    return node.line


_ABSENT = object()


def _child(container: Any, part: Any) -> Any:
    if isinstance(container, dict):
        return container.get(part, _ABSENT)
    if isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
        return container[part]
    return _ABSENT


# --- wording --------------------------------------------------------------------------------

_TYPE_WORDS = {
    "int": "must be an integer",
    "float": "must be a number",
    "finite": "must be a number",
    "bool": "must be true or false",
    "string": "must be a string",
    "model": "must be a mapping",
    "dict": "must be a mapping",
    "mapping": "must be a mapping",
}
_LIMITS = {"greater_than": "more than {gt}", "greater_than_equal": "at least {ge}",
           "less_than": "less than {lt}", "less_than_equal": "at most {le}"}


def word(model: type[BaseModel], loc: list[Any], error: Any, core: tuple[str, ...] = ()) -> str:
    """The message of one pydantic error, from its type and the model's declaration."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "config":
        return str(ctx["message"])
    if kind == "value_error":  # a model's own validator: its text, any secret masked
        return redact(str(ctx.get("error", "is not valid")))
    owner, annotation = _declared(model, loc)
    name = str(loc[-1]) if loc else ""
    if kind == "missing":
        field = fields_by_key(owner).get(name) if owner is not None else None
        if field is not None and secret_field(field):
            return f"is required: set {name} or {name}_file"
        return "is required"
    if kind == "extra_forbidden":
        refused = getattr(owner, "refused_keys", {})
        if name in refused:
            return refused[name]
        accepted = set(core) if len(loc) == 1 else set()
        if owner is not None:
            accepted |= accepted_keys(owner)
        return unknown_name("key", name, sorted(accepted))
    if kind == "literal_error" or kind == "enum":
        choices = get_args(annotation) if get_origin(annotation) is Literal else ()
        return f"must be one of {', '.join(str(c) for c in choices)}" if choices else (
            "is not one of the accepted values")
    if kind in _LIMITS:
        return "must be " + _LIMITS[kind].format(**ctx)
    if kind == "list_type":
        items = get_args(annotation)
        what = {str: " of strings", int: " of integers", float: " of numbers"}.get(
            items[0] if items else None, "")
        return f"must be a list{what}"
    prefix = kind.split("_")[0]
    return _TYPE_WORDS.get(prefix, f"is not valid ({kind})")


def accepted_keys(model: type[BaseModel]) -> set[str]:
    fields = fields_by_key(model)
    keys = set(fields) | {f"{key}_file" for key, field in fields.items() if secret_field(field)}
    if issubclass(model, ConfigModel):
        keys |= set(model.core_keys)
    return keys


def _declared(model: type[BaseModel], loc: list[Any]) -> tuple[type[BaseModel] | None, Any]:
    """The model that declares ``loc``'s last key, and the annotation at ``loc``."""
    owner: type[BaseModel] | None = None
    annotation: Any = model
    for part in loc:
        annotation = optional_of(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = fields_by_key(annotation).get(str(part))
            annotation = None if field is None else field.annotation
        elif get_origin(annotation) in (list, dict) and get_args(annotation):
            annotation = get_args(annotation)[-1]
        else:
            return owner, None
    return owner, optional_of(annotation)
