"""Tree reduction in Ray tasks: partial results held in the object store are merged FAN_IN at a
time, level by level, so no process holds more than FAN_IN partials and the driver receives only
the final, fixed-size result."""

from __future__ import annotations

from typing import Callable, TypeVar

import ray

FAN_IN = 16
T = TypeVar("T")


@ray.remote
def _merged(merge: Callable[[list], object], *parts: object) -> object:
    return merge(list(parts))


def tree_reduce(refs: list["ray.ObjectRef"], merge: Callable[[list[T]], T]) -> T:
    """`merge` over every partial behind `refs` (an associative, commutative merge, which also
    answers an empty list), computed in Ray tasks."""
    while True:
        refs = [_merged.remote(merge, *refs[start : start + FAN_IN]) for start in range(0, max(len(refs), 1), FAN_IN)]
        if len(refs) == 1:
            return ray.get(refs[0])
