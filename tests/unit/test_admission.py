"""core.admission: the limits table, the params that change it, the scale and the memory bound."""

from __future__ import annotations

import pytest

from core import admission
from core.admission import LIMITS, TooManyPoints, cap, check, limit_for
from core.algorithms import supported_algorithms, validate_params
from core.algorithms.spectral import RBF_MAX_POINTS


def params(name: str, **raw: object) -> object:
    return validate_params(name, raw)


def test_every_registered_algorithm_has_a_limit_with_a_reason() -> None:
    assert set(LIMITS) == set(supported_algorithms())
    for name, limit in LIMITS.items():
        assert limit.points > 0 and limit.reason and limit.instead, name


def test_the_limits_table() -> None:
    table = {name: cap(name, params(name), 768).points for name in LIMITS}  # type: ignore[union-attr]
    assert table == {
        "kmeans": 1_000_000,
        "hdbscan": 500_000,
        "dbscan": 300_000,
        "optics": 25_000,
        "agglomerative": 30_000,
        "spectral": RBF_MAX_POINTS,  # the default affinity is rbf
        "gaussian_mixture": 500_000,
        "mean_shift": 20_000,
    }


def test_params_that_change_the_limit() -> None:
    assert limit_for("spectral", params("spectral", affinity="nearest_neighbors")).points == 100_000  # type: ignore[union-attr]
    assert limit_for("spectral", params("spectral")).points == RBF_MAX_POINTS  # type: ignore[union-attr]
    for kind, points in (("full", 500_000), ("tied", 500_000), ("diag", 1_000_000), ("spherical", 1_000_000)):
        gm = params("gaussian_mixture", covariance_type=kind)
        assert limit_for("gaussian_mixture", gm).points == points, kind  # type: ignore[union-attr]
    assert limit_for("attribute_based") is None and cap("attribute_based", None, 0) is None


def test_at_the_limit_passes_one_over_is_refused() -> None:
    p = params("agglomerative")
    check("agglomerative", p, 30_000, 768)
    with pytest.raises(TooManyPoints) as exc:
        check("agglomerative", p, 30_001, 768)
    err = exc.value
    assert err.code == "too_many_points" and err.type == "validation_error"
    assert err.message == (
        "this run would cluster 30,001 points: agglomerative accepts at most 30,000 points per run on "
        "one worker (≈60 s budget; ward: 27 s and 3 GB at 20k; O(N²) time and memory); "
        "set sample_size ≤ 30000 or use kmeans / hdbscan"
    )
    assert (
        err.details is not None and err.details["bound"] == "points" and err.details["max_points"] == 30_000
    )


def test_the_alternative_fits_the_algorithm() -> None:
    with pytest.raises(TooManyPoints, match="use affinity 'nearest_neighbors' or kmeans"):
        check("spectral", params("spectral"), RBF_MAX_POINTS + 1, 768)
    with pytest.raises(TooManyPoints, match="covariance_type 'diag'"):
        check("gaussian_mixture", params("gaussian_mixture"), 500_001, 64)
    with pytest.raises(TooManyPoints, match="raise CLUSTERD_ADMISSION_SCALE"):
        check("kmeans", params("kmeans"), 1_000_001, 768)


def test_the_scale_multiplies_the_points_bound() -> None:
    assert cap("optics", params("optics"), 768, scale=4).points == 100_000  # type: ignore[union-attr]
    assert cap("optics", params("optics"), 768, scale=1e-9).points == 1  # type: ignore[union-attr]
    check("optics", params("optics"), 50_000, 768, scale=2)


def test_the_memory_bound_is_linear_or_quadratic() -> None:
    mib = 2**20
    # kmeans: 8 × N×D×4 bytes; 4,096 MB less the 1,024 MB reserve at D=768
    c = cap("kmeans", params("kmeans"), 768, memory_limit_mb=4096)
    assert c is not None and c.bound == "memory" and c.points == (4096 - 1024) * mib // (768 * 4 * 8)
    # a small D: the points bound stays the tighter one
    c = cap("kmeans", params("kmeans"), 8, memory_limit_mb=4096)
    assert c is not None and c.bound == "points" and c.points == 1_000_000
    # agglomerative: 8·N² + 8·N·768·4 ≤ 3 GiB gives 18,588 points (N² alone would give 20,066)
    c = cap("agglomerative", params("agglomerative"), 768, memory_limit_mb=4096)
    assert c is not None and c.bound == "memory" and c.points == 18_588
    est = admission.estimated_bytes(c.limit, c.points, 768)
    assert est <= (4096 - 1024) * mib < admission.estimated_bytes(c.limit, c.points + 1, 768)


def test_the_memory_message_names_the_setting() -> None:
    with pytest.raises(TooManyPoints) as exc:
        check("kmeans", params("kmeans"), 500_000, 768, memory_limit_mb=2048)
    err = exc.value
    assert "of 768 dimensions, needing about 12,743 MB" in err.message
    assert (
        "2,048 MB (CLUSTERD_WORKER_MEMORY_LIMIT_MB)" in err.message
        and "set sample_size ≤ 43690 or give the workers more memory" in err.message
    )
    assert (
        err.details is not None
        and err.details["estimated_mb"] == 12_743
        and err.details["memory_limit_mb"] == 2048
    )
    # a limit that the reserve alone uses up admits nothing
    with pytest.raises(TooManyPoints, match="fits at most 0 of them") as exc:
        check("kmeans", params("kmeans"), 10, 8, memory_limit_mb=1024)
    assert exc.value.message.endswith("1,024 MB are reserved for the libraries: give the workers more memory")


def test_remedy_replaces_the_advice() -> None:
    with pytest.raises(TooManyPoints, match=r"; send at most 10 rows$"):
        check("kmeans", None, 11, 2, scale=1e-5, field="data", remedy="send at most {max} rows")
