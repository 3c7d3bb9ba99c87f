"""Theoretical saturation for open coding: are new failure modes still turning up?

Open coding stops being worth it when labelling more traces no longer reveals new kinds of
failure. Two views of the same data, in the order the traces were labelled:

- the discovery curve: after the i-th labelled trace, how many distinct modes have been seen;
- per window w: how many modes appeared *for the first time* among the last w labelled traces.

"0 new modes in the last 20 traces" is a common stopping rule. It is a heuristic, not a test:
it says nothing about modes too rare to show up in 20 traces (a mode at 2% prevalence is absent
from 20 random traces two times in three), and it depends on the order traces were labelled in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Saturation:
    """Discovery of failure modes along the labelling order."""

    new_in_last: dict[int, int]  # window -> modes first seen within the last `window` labels
    curve: list[int]  # curve[i] = distinct modes seen after the first i + 1 labelled traces
    labels: int  # labelled traces considered
    modes: int  # distinct modes seen in total

    def window_is_full(self, window: int) -> bool:
        """False when fewer than `window` traces were labelled (the count then covers them all)."""
        return self.labels >= window


def saturation(
    mode_lists_in_label_order: Sequence[Iterable[str]], windows: Iterable[int] = (10, 20, 50)
) -> Saturation:
    """Discovery curve and new-mode counts per trailing window.

    `mode_lists_in_label_order[i]` holds the failure modes given to the i-th labelled trace
    (empty for a pass, or for a fail not yet coded). When fewer traces than `window` were
    labelled, the window covers all of them (see `Saturation.window_is_full`).
    """
    wanted = []
    for w in windows:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"windows must be positive whole numbers, got {w!r}")
        wanted.append(w)
    first_seen: dict[str, int] = {}
    curve: list[int] = []
    for i, modes in enumerate(mode_lists_in_label_order):
        if isinstance(modes, (str, bytes)):
            raise ValueError(
                f"mode_lists_in_label_order[{i}] must be a list of mode names, got the string {modes!r}")
        for mode in modes:
            first_seen.setdefault(mode, i)
        curve.append(len(first_seen))
    n = len(curve)
    new_in_last = {w: sum(1 for i in first_seen.values() if i >= n - w) for w in wanted}
    return Saturation(new_in_last=new_in_last, curve=curve, labels=n, modes=len(first_seen))
