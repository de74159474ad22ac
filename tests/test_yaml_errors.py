"""A YAML syntax error is reported at the line of the mistake, in words (issue 19)."""

import pytest

from agent.config.loader import ConfigError, parse_config

CASES = [
    # the key of line 3 lost its ':'; PyYAML gives up at line 6 ("but found '?'")
    ("channels:\n  amazon_ads:\n    client_id x\n    # a comment\n\n    client_secret: y\n",
     3, "this line has no ':' after its key, or line 6 is indented differently"),
    ("channels:\n  amazon_ads\n    client_id: x\n", 2, "this line has no ':' after its key"),
    ("agent:\n  listen_address: \"127.0.0.1:9877\nchannels: {}\n\n", 2,
     "a quoted value starts on this line and is never closed"),
    ("channels:\n  amazon_ads:\n    accounts:\n      - {name: acme-us, region: na\n"
     "      - {name: acme-eu, region: eu}\n", 4,
     "the '{' on this line is not closed by '}', or two of its items have no ','"),
    ("channels:\n  amazon_ads:\n    accounts:\n      - name: a\n        region: na\n"
     "      refresh_token: x\n", 6, "this line is indented differently from the lines before it"),
    ("channels:\n  amazon_ads:\n    client_id: x: y\n", 3, "a value holds ': '"),
    ("agent:\n\tcheck_interval: 5m\n", 2, "a tab character: YAML indents with spaces only"),
]


@pytest.mark.parametrize(("text", "line", "words"), CASES)
def test_the_line_of_the_mistake_and_what_yaml_expected(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_config(text, {}, environ={})
    [problem] = info.value.problems
    assert (problem.line, problem.path) == (line, "")
    assert problem.message.startswith("invalid YAML: " + words)
    for jargon in ("'?'", "<block end>", "<block mapping start>", "scalar"):
        assert jargon not in problem.message
