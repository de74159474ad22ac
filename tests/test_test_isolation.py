"""The suite's own isolation: global state one test leaves behind must not reach the next."""

from pathlib import Path

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"


def test_a_secret_registered_by_one_test_is_not_masked_in_the_next(pytester):
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(
        test_a_registers="""
from agent.channel import Secret

def test_a_config_word_becomes_a_secret():
    Secret("refresh_token")
""",
        test_b_reads="""
from agent.redact import redact

def test_the_word_is_not_masked_any_more():
    assert redact("accounts[0].refresh_token_file") == "accounts[0].refresh_token_file"
""",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
