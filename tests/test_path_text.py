"""A relative file path joined as text is the path pathlib would make."""

from pathlib import Path

import pytest

from agent.config.types import resolve_path_text

TEXTS = ["a", "a/b", "tokens/m-1", "a b/c", " a ", "~/x", "~", "./a", "a/./b", "a/../b", "..",
         ".", "a//b", "a/", "/abs", "//abs", "///abs", ".hidden/x", "a/..b", "..a", "a/.",
         "x~", "a/b/"]


class Info:
    def __init__(self, base):
        self.context = {"base_dir": base}


@pytest.mark.parametrize("base", [Path("/srv/agent"), Path("/"), Path("//"), Path("rel/dir")])
def test_every_kind_of_path_resolves_as_pathlib_does(base):
    for text in TEXTS:
        expected = Path(text.strip()).expanduser()
        expected = expected if expected.is_absolute() else base / expected
        assert resolve_path_text(text, Info(base)) == str(expected), text
