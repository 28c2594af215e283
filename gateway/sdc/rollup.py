"""Secondary suppression for ``GROUP BY ROLLUP(k1, ..., km)`` results.

Each row is on a level: the number of leading keys that are not rolled up (``GROUPING(k) = 0``). A row on
level L-1 is the total of the rows on level L that share its L-1 leading key values; every such parent
with its children is one additive equation (parent = sum of children). A suppressed cell can be
recomputed from an equation in which it is the only unknown, and the suppressed children's total can be
recomputed whenever the parent is released. The method, applied until nothing changes:

1. an equation with exactly one suppressed cell gets a second one;
2. an equation whose parent is released and whose suppressed children together rest on fewer than
   ``min_cell`` persons gets another suppressed child;

each time suppressing the released child with the fewest persons (or, if every child is suppressed, the
parent). This is the usual greedy heuristic; docs/sdc.md states what it does not guarantee.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def secondary_suppression(
    keys: Sequence[Sequence[Any]],
    rolled_up: Sequence[Sequence[bool]],
    persons: Sequence[int | None],
    suppressed: Sequence[bool],
    *,
    min_cell: int,
) -> list[bool]:
    """Return the suppression flags extended so that no suppressed cell can be recomputed by subtraction.

    ``keys[r]`` are row r's ROLLUP key values, ``rolled_up[r][i]`` is ``GROUPING(key_i) = 1``,
    ``persons[r]`` the distinct persons behind the row, ``suppressed[r]`` the primary suppression.
    """
    result = list(suppressed)
    size = [int(p) if p is not None else 0 for p in persons]
    level = []
    for flags in rolled_up:
        present = 0
        for flag in flags:
            if flag:
                break
            present += 1
        level.append(present)
    rows_at: dict[tuple[int, tuple[Any, ...]], list[int]] = defaultdict(list)
    for row, depth in enumerate(level):
        rows_at[(depth, tuple(keys[row][:depth]))].append(row)
    equations: list[tuple[int, list[int]]] = []
    for (depth, prefix), parents in rows_at.items():
        children = [r for r in range(len(level)) if level[r] == depth + 1 and tuple(keys[r][:depth]) == prefix]
        if children:
            for parent in parents:
                equations.append((parent, children))
    changed = True
    while changed:
        changed = False
        for parent, children in equations:
            while True:
                hidden = [c for c in children if result[c]]
                unknowns = len(hidden) + (1 if result[parent] else 0)
                weak_total = not result[parent] and hidden and sum(size[c] for c in hidden) < min_cell
                if unknowns != 1 and not weak_total:
                    break
                candidates = sorted((c for c in children if not result[c]), key=lambda c: size[c])
                if candidates:
                    result[candidates[0]] = True
                elif not result[parent]:
                    result[parent] = True
                else:
                    break
                changed = True
    return result
