import pytest

from agent.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("30s", 30),
        ("5m", 300),
        ("36h", 129600),
        ("365d", 365 * 86400),
        ("1w", 7 * 86400),
        ("1y", 365 * 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("0", 0),
        ("0s", 0),
        (" 5m ", 300),
        (0, 0),
        (0.0, 0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "-5m",
        "5",  # a bare number needs a unit
        "1.5h",
        "5x",
        "5 m",
        "m",
        "30m1h",  # largest unit first
        "1h1h",
        "five minutes",
        "5M",
        -1,
        300,
        float("nan"),
        float("inf"),
        True,
        None,
        [],
    ],
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert "30s" in message and "ms, s, m, h, d, w, y" in message


def test_parse_duration_message_never_repeats_the_value():
    with pytest.raises(ValueError) as info:
        parse_duration("sekrit-token-value")
    assert "sekrit" not in str(info.value)


def test_negative_is_named_in_the_message():
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-1s")
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1, "1s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (93600, "1d2h"),
        (129600, "1d12h"),
        (365 * 86400, "365d"),
        (0.5, "500ms"),
        (1.25, "1s250ms"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, 1, 59, 61, 3599, 86399, 93784, 31536000, 0.001, 12.5])
def test_format_is_the_inverse_of_parse(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_format_duration_rejects(seconds):
    with pytest.raises(ValueError):
        format_duration(seconds)
