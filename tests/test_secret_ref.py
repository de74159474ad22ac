"""SecretRef: small (slots, the path as text) yet the same value object plugins read."""

import pickle
from pathlib import Path

import pytest

from agent.channel import Secret, SecretRef


def test_a_reference_keeps_its_path_as_a_path_and_reads_the_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok\n")
    ref = SecretRef(path=token, source="accounts[0].refresh_token_file")
    assert ref.path == token and isinstance(ref.path, Path)
    assert ref.read().reveal() == "tok"
    assert not hasattr(ref, "__dict__")
    with pytest.raises(AttributeError):
        ref.source = "elsewhere"  # type: ignore[misc]


def test_equality_and_copies_ignore_the_registry_and_never_show_the_value():
    a = SecretRef(value=Secret("PLANTED-ref"), source="x", registry=object())
    b = SecretRef(value=Secret("PLANTED-ref"), source="x")
    assert a == b and hash(a) == hash(b)
    assert a != SecretRef(value=Secret("other"), source="x")
    bound = b.replace(registry="stores")
    assert bound.registry == "stores" and bound == b
    assert "PLANTED" not in repr(a)
    assert pickle.loads(pickle.dumps(b)) == b
    assert SecretRef(source="column").withheld and not b.withheld
