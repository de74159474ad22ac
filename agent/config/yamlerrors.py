"""A YAML syntax error in words, at the line of the mistake.

PyYAML reports where its parser gave up, in its own terms ("expected <block end>, but found
'?'"), often lines after the mistake (an unclosed quote is found at the end of the file). Each
common mistake is recognised here and said as what to fix, at the line where it was made.
The offending line itself is never quoted: it may hold a secret.
"""

from __future__ import annotations

import re

import yaml

from agent.config.problems import ConfigProblem

# PyYAML's token names -> words
_TOKENS = {
    "'?'": "a key", "':'": "':'", "'-'": "a '- ' list item", "'<block end>'": "the end of a block",
    "<block end>": "the end of the indented block", "'<block mapping start>'": "a key",
    "'<block sequence start>'": "a '- ' list item", "'<scalar>'": "a value",
    "'<stream end>'": "the end of the file", "'<flow mapping start>'": "'{'",
    "'<flow sequence start>'": "'['", "'<anchor>'": "an &anchor", "'<alias>'": "an *alias",
    "'<tag>'": "a !tag", "'<document start>'": "'---'",
}
_TOKEN = re.compile("|".join(re.escape(token) for token in sorted(_TOKENS, key=len, reverse=True)))
INDENTATION = ("this line is indented differently from the lines before it: the keys of one "
               "mapping, and the '- ' items of one list, must start in the same column")


def yaml_syntax_problem(source: str, exc: yaml.YAMLError, text: str = "") -> ConfigProblem:
    """The problem a YAML syntax error stands for; ``text`` (the file) sharpens the line."""
    line, detail = _explain(exc, text.splitlines())
    return ConfigProblem(source, line, "", f"invalid YAML: {detail}")


def _explain(exc: yaml.YAMLError, lines: list[str]) -> tuple[int | None, str]:
    context = getattr(exc, "context", None) or ""
    problem = getattr(exc, "problem", None) or ""
    start = getattr(exc, "context_mark", None)
    mark = getattr(exc, "problem_mark", None) or start
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not accept
        return line, exc.reason
    if "quoted scalar" in context and "end of stream" in problem and start is not None:
        return start.line + 1, "a quoted value starts on this line and is never closed"
    flow = re.match(r"while parsing a flow (sequence|mapping)", context)
    if flow and start is not None:
        opening, closing = ("[", "]") if flow.group(1) == "sequence" else ("{", "}")
        return start.line + 1, (f"the '{opening}' on this line is not closed by '{closing}', or "
                                f"two of its items have no ',' between them (YAML gave up "
                                f"at line {line})")
    if "expected <block end>" in problem and mark is not None:
        above = _line_above(mark.line, lines)
        if above is not None and ":" not in lines[above] and not (
                lines[above].lstrip().startswith(("- ", "#", "[", "{", "|", ">"))):
            return above + 1, (f"this line has no ':' after its key, or line {line} is indented "
                               f"differently from the lines before it")
        return line, INDENTATION
    if "mapping values are not allowed" in problem and mark is not None:
        return _stray_colon(mark, lines)
    if "'\\t'" in problem or "\t" in problem:
        return line, "a tab character: YAML indents with spaces only"
    if "found undefined alias" in problem:
        return line, "an *alias refers to no &anchor defined above it"
    if "cannot start any token" in problem:
        return line, "a value cannot start with this character (like @ or `): quote the value"
    detail = ", ".join(part for part in (context, problem) if part) or type(exc).__name__
    return line, _TOKEN.sub(lambda m: _TOKENS[m.group(0)], detail)


def _stray_colon(mark: yaml.Mark, lines: list[str]) -> tuple[int, str]:
    """A ':' where YAML expects none: a value holding ': ', or the key of the line above has
    no ':' (then YAML read both lines as one value)."""
    here = lines[mark.line] if mark.line < len(lines) else ""
    above = _line_above(mark.line, lines)
    if ":" not in here[:mark.column] and above is not None and ":" not in lines[above]:
        return above + 1, ("this line has no ':' after its key (YAML read it and the next "
                           "line as one value)")
    return mark.line + 1, "a value holds ': ' (a colon and a space): quote the value"


def _line_above(index: int, lines: list[str]) -> int | None:
    """The index of the nearest line above ``index`` with content (not blank, not a comment)."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            return i
    return None
