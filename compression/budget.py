"""One option per table with the least summed harm within a byte budget (a multiple-choice knapsack).

Mixed precision chooses each table's precision this way, mixed dimensions each table's width.
Options come most expensive first; `harm[table][option]` is what choosing it costs in accuracy,
`size(table, option)` its bytes. With few combinations every one is tried; otherwise tables are
lowered greedily (least harm added per byte saved) until the budget holds, then raised back
while it still holds (the last lowering may have saved more bytes than needed).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

Option = TypeVar("Option")
EXACT_SEARCH_LIMIT = 100_000  # combinations searched exhaustively


def search(candidates: Mapping[str, Sequence[Option]], harm: Mapping[str, Mapping[Option, float]],
           size: Callable[[str, Option], int], budget: float,
           exact_limit: int = EXACT_SEARCH_LIMIT) -> dict[str, Option]:
    """Per table, one of its `candidates` with the least summed harm within `budget` bytes: every
    combination when there are at most `exact_limit`, else greedy. The budget must be reachable."""
    if math.prod(len(c) for c in candidates.values()) <= exact_limit:
        return _exact(candidates, harm, size, budget)
    level = {name: 0 for name in candidates}
    while _total(candidates, size, level) > budget:
        level[_cheapest_step(candidates, harm, size, level)] += 1
    _spend_slack(candidates, harm, size, level, budget)
    return {n: candidates[n][level[n]] for n in candidates}


def _exact(candidates: Mapping[str, Sequence[Option]], harm: Mapping[str, Mapping[Option, float]],
           size: Callable[[str, Option], int], budget: float) -> dict[str, Option]:
    """Every combination: the least summed harm within budget (then the fewest bytes)."""
    names = list(candidates)
    options = [[(harm[n][p], size(n, p), i) for i, p in enumerate(candidates[n])] for n in names]
    best = min((combo for combo in itertools.product(*options) if sum(c[1] for c in combo) <= budget),
               key=lambda combo: (sum(c[0] for c in combo), sum(c[1] for c in combo)))
    return {n: candidates[n][c[2]] for n, c in zip(names, best)}


def _total(candidates: Mapping[str, Sequence[Option]], size: Callable[[str, Option], int],
           level: dict[str, int]) -> int:
    return sum(size(n, c[level[n]]) for n, c in candidates.items())


def _spend_slack(candidates: Mapping[str, Sequence[Option]], harm: Mapping[str, Mapping[Option, float]],
                 size: Callable[[str, Option], int], level: dict[str, int], budget: float) -> None:
    """Raise tables back (largest harm reduction first) while the budget still holds."""
    while True:
        gains = []
        for name, c in candidates.items():
            if level[name] == 0:
                continue
            level[name] -= 1
            fits = _total(candidates, size, level) <= budget
            level[name] += 1
            gain = harm[name][c[level[name]]] - harm[name][c[level[name] - 1]]
            if fits and gain > 0:
                gains.append((gain, name))
        if not gains:
            return
        level[max(gains)[1]] -= 1


def _cheapest_step(candidates: Mapping[str, Sequence[Option]], harm: Mapping[str, Mapping[Option, float]],
                   size: Callable[[str, Option], int], level: dict[str, int]) -> str:
    """The table whose next option adds the least harm per byte saved."""
    best, best_cost = "", float("inf")
    for name, c in candidates.items():
        if level[name] + 1 >= len(c):
            continue
        now, nxt = c[level[name]], c[level[name] + 1]
        saved = size(name, now) - size(name, nxt)
        cost = (harm[name][nxt] - harm[name][now]) / saved if saved > 0 else float("inf")
        if cost < best_cost or not best:
            best, best_cost = name, cost
    return best
