import copy
import gc
import logging
import pickle

from agent.channel import Secret
from agent.redact import RETIRED_KEPT, RedactingFilter, redact


def test_token_shaped_strings_are_masked():
    text = 'refresh Atzr|IwEBIabc-123_x and access Atza|zzz, header "Bearer abc.def"'
    out = redact(text)
    assert "IwEBIabc" not in out and "zzz" not in out and "abc.def" not in out
    assert "Atzr|***" in out and "Atza|***" in out


def test_every_secret_object_is_masked_even_without_a_token_shape():
    Secret("plain-client-secret-42")
    assert redact("secret is plain-client-secret-42!") == "secret is ***!"


def test_logging_filter_masks_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", ("Atzr|leak",), None)
    try:
        raise ValueError("Atza|in-traceback")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert "leak" not in record.getMessage()
    assert "in-traceback" not in record.exc_text


def test_extra_values_are_masked_longest_first():
    assert redact("a s3cr3t-value-long b", ["s3cr3t", "s3cr3t-value-long"]) == "a *** b"


def test_token_shaped_secrets_are_not_kept_in_the_registry():
    from agent import redact as module

    before = len(module._live)
    kept = [Secret(f"Atza|access-token-{i}") for i in range(100)]
    assert len(module._live) == before and kept
    del kept  # nor queued for release when dropped: nothing would ever drain them
    # (the garbage collector may meanwhile finalise a Secret an earlier test left behind)
    assert not [v for v in module._released if v.startswith("Atza|access-token-")]


def test_a_secret_stays_masked_while_held_and_the_registry_keeps_few_old_ones():
    """Rotated tokens (a Shopify shop's, a re-read client secret) must not pile up in the
    registry for the life of the process; a value still held anywhere stays masked."""
    from agent import redact as module

    held = Secret("client-secret-still-in-use")
    twice = Secret("shared-by-two-accounts")
    twin = Secret("shared-by-two-accounts")
    copied = copy.deepcopy(Secret("copied-client-secret"))
    del twin
    rotations = 3 * module.RETIRED_KEPT
    for i in range(rotations):
        Secret(f"rotated-shop-token-{i:05d}")  # dropped at once, as a rotated token is
    gc.collect()
    assert redact(f"{held.reveal()} {twice.reveal()} {copied.reveal()}") == "*** *** ***"
    newest = f"rotated-shop-token-{rotations - 1:05d}"
    assert redact(f"old token {newest}") == "old token ***"  # just rotated: still masked
    oldest = "rotated-shop-token-00000"
    assert redact(f"old token {oldest}") == f"old token {oldest}"
    assert len(module._retired) == module.RETIRED_KEPT
    assert {held.reveal(), twice.reveal(), copied.reveal()} <= set(module._live)


def test_a_pickled_secret_registers_its_value_again():
    value = "pickled-client-secret"
    restored = pickle.loads(pickle.dumps(Secret(value)))
    for i in range(2 * RETIRED_KEPT):
        Secret(f"rotated-shop-token-{i:05d}")
    assert redact(value) == "***" and restored.reveal() == value


def test_amazon_client_secrets_are_masked_by_their_shape():
    out = redact('{"error_description": "client amzn1.oa2-cs.v1.0a1b2c3d4e5f rejected"}')
    assert "0a1b2c3d4e5f" not in out and "amzn1.oa2-cs.v1.***" in out


def test_uncaught_exceptions_are_masked(capsys):
    from agent.redact import _redacting_excepthook

    try:
        raise RuntimeError("refresh Atzr|uncaught-leak failed")
    except RuntimeError as exc:
        _redacting_excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "RuntimeError: refresh Atzr|***" in err and "uncaught-leak" not in err


def test_a_secret_that_is_an_ordinary_word_is_masked_anyway():
    # the chosen trade-off (README "No secret leaves the process"): never show a secret, even
    # at the cost of a mangled message; a value under 6 characters is not masked by value
    Secret("refresh_token")
    Secret("abcde")
    assert redact("accounts[0].refresh_token_file abcde") == "accounts[0].***_file abcde"
