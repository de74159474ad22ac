"""How the text exposition spells one family's sample lines: names, sorted labels, escaped
label values and Go-style float values, exactly as prometheus_client writes them."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from agent.metrics.incremental import REGION


def float_text(value: float) -> str:
    """``prometheus_client.utils.floatToGoString``, minus its checks for the common case."""
    if value != value or value in (math.inf, -math.inf):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    s = repr(value)
    dot = s.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def escape(value: str) -> str:
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_free(values: tuple[str, ...]) -> bool:
    """Whether none of ``values`` needs escaping (one scan of their text, not one per value:
    labels rarely do)."""
    text = "".join(values)
    return "\\" not in text and "\n" not in text and '"' not in text


def sample_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def prefix_format(name: str, label_names: list[str], without_region: bool,
                  ) -> tuple[str, Callable[[tuple[str, ...]], tuple[str, ...]]]:
    """``name{a="%s",b="%s"} `` for the sample name ``name``, with the labels sorted by name
    (``region`` left out when ``without_region``), and a function that picks a sample's label
    values (in the family's order) in that order."""
    order = sorted((j for j, name in enumerate(label_names)
                    if not (without_region and name == REGION)), key=label_names.__getitem__)
    labels = ",".join(f'{label_names[j]}="%s"' for j in order)
    if len(order) > 1:
        pick: Callable[[tuple[str, ...]], tuple[str, ...]] = operator.itemgetter(*order)
    elif order:
        only = order[0]
        pick = lambda values: (values[only],)  # noqa: E731 - itemgetter of one is no tuple
    else:
        pick = lambda values: ()  # noqa: E731
    return f"{name.replace('%', '%%')}{{{labels}}} ", pick


def label_names_of(family: Metric) -> Iterator[str]:
    names = getattr(family, "_labelnames", None)
    if names is None:
        raise TypeError(f"cannot read the label names of family {family.name}")
    yield from names
