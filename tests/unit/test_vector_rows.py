"""core.vectors' decode path: VectorRows (one preallocated matrix, in-place reorder/keep/trim) and
decode_many, checked against the plain numpy equivalents."""

from __future__ import annotations

import numpy as np
import pytest

from core.vectors import DTYPE, VectorRows, decode, decode_many, encode


def blobs_of(X: np.ndarray) -> list[bytes]:
    return [encode(x) for x in X]


def matrix(n: int, d: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_decode_many_matches_frombuffer_and_stack() -> None:
    X = matrix(37)
    out = decode_many(blobs_of(X), 6)
    assert out.dtype == DTYPE and out.shape == (37, 6) and out.flags.writeable and out.flags.c_contiguous
    assert np.array_equal(out, np.stack([decode(b) for b in blobs_of(X)]))
    assert decode_many([], 6).shape == (0, 6)


@pytest.mark.parametrize("capacity", [0, 1, 10, 25, 1000])
def test_rows_grow_past_capacity_and_take_trims(capacity: int) -> None:
    X = matrix(25)
    rows = VectorRows(6, capacity)
    for start in range(0, 25, 4):
        rows.extend(blobs_of(X[start : start + 4]))
        assert len(rows) == min(25, start + 4) <= rows.capacity
    out = rows.take()
    assert out.shape == (25, 6) and out.flags.owndata and np.array_equal(out, X)
    assert len(rows) == 0 and rows.take().shape == (0, 6)  # starts over empty


def test_rows_reject_a_blob_of_another_length() -> None:
    rows = VectorRows(6, 4)
    rows.extend(blobs_of(matrix(2)))
    with pytest.raises(ValueError):
        rows.extend([encode(np.zeros(5, np.float32))])
    with pytest.raises(ValueError):
        rows.extend([encode(np.zeros(7, np.float32))])
    assert len(rows) == 2


@pytest.mark.parametrize("seed", range(6))
def test_reorder_in_place_equals_fancy_indexing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    X = matrix(n, seed=seed)
    order = rng.permutation(n)
    if seed == 0:
        order = np.arange(n)  # identity: nothing moves
    elif seed == 1:
        order = np.roll(np.arange(n), 1)  # one long cycle
    rows = VectorRows(6, n + 3)
    rows.extend(blobs_of(X))
    rows.reorder(order)
    assert np.array_equal(rows.take(), X[order])


def test_reorder_refuses_what_is_not_a_permutation() -> None:
    rows = VectorRows(6, 3)
    rows.extend(blobs_of(matrix(3)))
    for bad in ([0, 0, 1], [0, 1], [1, 2, 3], [-1, 0, 1]):
        with pytest.raises(ValueError):
            rows.reorder(np.asarray(bad))


@pytest.mark.parametrize("size", [0, 1, 7, 50, 80])
def test_keep_compacts_in_place_like_fancy_indexing(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.vectors._MOVE_BYTES", 3 * 6 * 4)  # three rows a step: many steps
    X = matrix(80)
    keep = np.sort(np.random.default_rng(size).choice(80, size=size, replace=False))
    rows = VectorRows(6, 100)
    rows.extend(blobs_of(X))
    rows.keep(keep)
    out = rows.take()
    assert out.shape == (size, 6) and np.array_equal(out, X[keep])


def test_keep_refuses_unsorted_or_out_of_range() -> None:
    rows = VectorRows(6, 5)
    rows.extend(blobs_of(matrix(5)))
    for bad in ([2, 1], [1, 1], [0, 5], [-1, 2]):
        with pytest.raises(ValueError):
            rows.keep(np.asarray(bad))
    assert len(rows) == 5
