"""The numpy paths of core.vectors (to_float32's one-call conversion, convert_many for a batch)
agree with the element loop they stand in for: the same float32 array for every list it accepts,
and nothing accepted that the loop refuses (the loop then names the position)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from core.errors import ValidationFailed
from core.vectors import _to_float32_checked, convert_many, to_float32

F32_MAX = float(np.finfo(np.float32).max)
ELEMENTS: list[Any] = [
    0.0, -0.0, 1.0, 0.5, -2.5, 1e-45, 1e-320, 3.4e38, -3.4e38, F32_MAX, -F32_MAX,
    np.nextafter(F32_MAX, np.inf), 3.5e38, 1e39, 1e308, float("nan"), float("inf"), float("-inf"),
    0, 1, -1, 7, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, 10**20, 10**39,
    -(10**39), True, False, None, "1.0", "x", [1.0], [], {"x": 1},
]  # fmt: skip


def judge(value: list[Any]) -> np.ndarray | str:
    try:
        return _to_float32_checked(value, loc="v")
    except ValidationFailed as exc:
        return exc.message


def same(a: np.ndarray | str | None, b: np.ndarray | str) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()  # bit for bit: -0.0 too
    return a == b


def lists(seed: int, n: int, length: int) -> list[list[Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        base: list[Any] = [rng.gauss(0, 1) for _ in range(length)]
        for _ in range(rng.choice([0, 0, 1, 2])):  # most lists clean, some with odd elements
            base[rng.randrange(length)] = rng.choice(ELEMENTS)
        if rng.random() < 0.2:
            base = [rng.randint(-5, 5) for _ in range(length)]
        out.append(base)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_to_float32_agrees_with_the_element_loop(seed: int) -> None:
    for value in lists(seed, 60, 4):
        try:
            got: np.ndarray | str = to_float32(value, loc="v", max_dimensions=16)
        except ValidationFailed as exc:
            got = exc.message
        assert same(got, judge(value)), value


@pytest.mark.parametrize("element", ELEMENTS, ids=repr)
def test_each_odd_element_in_every_position(element: Any) -> None:
    for pos in range(3):
        value: list[Any] = [0.25, 1.0, 0.0]
        value[pos] = element
        try:
            got: np.ndarray | str = to_float32(value, loc="v", max_dimensions=16)
        except ValidationFailed as exc:
            got = exc.message
        assert same(got, judge(value)), value
        batch = [[0.5, 0.5, 0.5], value, [1, 0, 1]]
        for arr, v in zip(convert_many(batch), batch, strict=True):
            expected = judge(v)
            if arr is not None:  # accepted in bulk: exactly what the loop makes of it
                assert isinstance(expected, np.ndarray) and same(arr, expected), v


@pytest.mark.parametrize("seed", range(10))
def test_convert_many_accepts_only_what_the_loop_accepts(seed: int) -> None:
    batch = lists(seed, 200, 5)
    for arr, v in zip(convert_many(batch), batch, strict=True):
        expected = judge(v)
        if arr is None:
            continue
        assert isinstance(expected, np.ndarray) and same(arr, expected), v
    clean = [[float(i), 0.5, -0.0] for i in range(50)]
    assert all(a is not None for a in convert_many(clean))


def test_bools_are_refused_wherever_they_hide() -> None:
    for value in ([1.0, True], [False, 0.0], [1, 2, True], [True, False]):
        with pytest.raises(ValidationFailed, match=r"v\[\d\]: must be a number, got bool"):
            to_float32(value, loc="v", max_dimensions=16)
        assert convert_many([value, value]) == [None, None]
