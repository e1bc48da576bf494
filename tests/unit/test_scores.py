"""core.scores against scikit-learn: the same values on awkward data, through every code path
(several silhouette tiles and centroid chunks, one thread or two)."""

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from core import row_kernels, scores
from core.metrics import quality_metrics

SIL_ABS = 1e-5
REL = 1e-5


def random_case(name, n=600, dim=12, k=5, seed=0):
    """(X float32, labels) for one of the awkward cases."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, dim))
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.normal(0, 1, (n, dim))).astype(np.float32)
    if name == "duplicates":
        X[n // 2 :] = X[: n - n // 2]
    elif name == "zero_vectors":
        X[::7] = 0.0
    elif name == "tiny_and_singleton_clusters":
        y[:6] = [k, k, k + 1, k + 1, k + 2, k + 3]  # two clusters of 2, two singletons
    elif name == "k2":
        y = y % 2
    elif name == "offset":
        X += 1000.0  # far from the origin: the expansion |x|^2 + |y|^2 - 2xy would cancel
    elif name == "identical_within_clusters":
        X = centres[y].astype(np.float32)
    elif name == "sparse_labels":
        y = np.array([-7, 3, 40, 1000, 5])[y % 5]
    return X, y


CASES = [
    "plain", "duplicates", "zero_vectors", "tiny_and_singleton_clusters", "k2", "offset",
    "identical_within_clusters", "sparse_labels",
]  # fmt: skip


@pytest.fixture(params=["one_thread", "two_threads"])
def small_tiles(request, monkeypatch):
    """Tiles of 64 rows and row ranges of 16, so small data crosses many of them."""
    monkeypatch.setattr(scores, "TILE", 64)
    monkeypatch.setattr(row_kernels, "MIN_ROWS_PER_THREAD", 16)
    monkeypatch.setattr(scores, "workers", lambda: 1 if request.param == "one_thread" else 2)


def sklearn64(X, y):
    """scikit-learn on the same values in float64. (Given float32 it computes Davies–Bouldin's
    centroids in float32; here every sum is float64, which is what float64 accumulation matches.)"""
    X64 = X.astype(np.float64)
    return silhouette_score(X64, y), davies_bouldin_score(X64, y), calinski_harabasz_score(X64, y)


def assert_scores_match(X, y):
    sil, db, ch = sklearn64(X, y)
    ours_db, ours_ch = scores.davies_bouldin_calinski_harabasz(X, y)
    assert scores.silhouette(X, y) == pytest.approx(sil, abs=SIL_ABS)
    # the silhouette from the label-free distance matrix (computed beside the fit) agrees
    D = scores.sample_distances(X)
    assert scores.silhouette_from_distances(D, y) == pytest.approx(sil, abs=SIL_ABS)
    assert ours_db == pytest.approx(db, rel=REL, abs=1e-7)  # sklearn: ~1e-8 where exactly 0
    assert ours_ch == pytest.approx(ch, rel=REL)


@pytest.mark.parametrize("name", CASES)
def test_equal_to_sklearn(name, small_tiles):
    assert_scores_match(*random_case(name))


@pytest.mark.parametrize("name", CASES)
def test_equal_to_sklearn_default_tiles(name):
    assert_scores_match(*random_case(name, n=1500, dim=40, k=7, seed=3))  # two tiles, the second partial


def test_wide_vectors_unit_rows(small_tiles):
    """Like the pipeline's input: high-dimensional and L2-normalised."""
    X, y = random_case("plain", n=400, dim=256, k=6, seed=5)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert_scores_match(X, y)


def test_float32_sklearn_agrees_too():
    """scikit-learn given the float32 array itself (its Davies–Bouldin centroids in float32)."""
    X, y = random_case("plain", n=1500, dim=30, k=6, seed=2)
    ours_db, ours_ch = scores.davies_bouldin_calinski_harabasz(X, y)
    assert scores.silhouette(X, y) == pytest.approx(silhouette_score(X, y), abs=SIL_ABS)
    assert ours_db == pytest.approx(davies_bouldin_score(X, y), rel=1e-4)
    assert ours_ch == pytest.approx(calinski_harabasz_score(X, y), rel=REL)


def test_identical_clusters_hit_sklearn_conventions(small_tiles):
    X, y = random_case("identical_within_clusters")
    assert scores.silhouette(X, y) == 1.0  # zero intra distances, exactly
    db, ch = scores.davies_bouldin_calinski_harabasz(X, y)
    assert db == 0.0 and ch == 1.0  # no intra-cluster distance / no within-cluster dispersion


def test_all_points_identical(small_tiles):
    X = np.ones((300, 8), dtype=np.float32)
    y = np.arange(300) % 3
    assert scores.silhouette(X, y) == 0.0
    assert scores.davies_bouldin_calinski_harabasz(X, y) == (0.0, 1.0)


@pytest.mark.parametrize("labels", [np.zeros(10), np.arange(10)])
def test_label_counts_sklearn_rejects_give_none(labels):
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    assert scores.silhouette(X, labels) is None
    assert scores.davies_bouldin_calinski_harabasz(X, labels) is None


def test_sample_is_sklearns_sample():
    """The sample is the one `silhouette_score(sample_size=..., random_state=seed)` draws, so the
    sampled value is scikit-learn's; a smaller sample is a subset of a larger one."""
    X, y = random_case("plain", n=3000, dim=16, k=6, seed=4)
    for size, seed in ((500, 0), (1200, 7)):
        m = quality_metrics(X, y, sample_size=size, seed=seed)
        expected = silhouette_score(X.astype(np.float64), y, sample_size=size, random_state=seed)
        assert m["silhouette_score"] == pytest.approx(expected, abs=SIL_ABS)
    small, large = scores.sample_indices(3000, 500, 3), scores.sample_indices(3000, 1200, 3)
    assert np.isin(small, large).all() and (np.diff(large) > 0).all()


def test_noise_excluded_scores_on_all_clustered_points():
    X, y = random_case("plain", n=900, dim=10, k=4, seed=6)
    y[::5] = -1
    m = quality_metrics(X, y, sample_size=300, seed=1)
    sil, db, ch = sklearn64(X[y != -1], y[y != -1])
    assert m["davies_bouldin_index"] == pytest.approx(db, rel=REL)  # every clustered point
    assert m["calinski_harabasz_score"] == pytest.approx(ch, rel=REL)
    sample = scores.sample_indices(int((y != -1).sum()), 300, 1)
    expected = silhouette_score(X[y != -1][sample].astype(np.float64), y[y != -1][sample])
    assert m["silhouette_score"] == pytest.approx(expected, abs=SIL_ABS)


def test_float64_input():
    X, y = random_case("plain", n=300, dim=6, k=3, seed=8)
    assert scores.silhouette(X.astype(np.float64), y) == pytest.approx(scores.silhouette(X, y), abs=1e-7)


def test_presampled_silhouette_serves_only_its_own_sample():
    """quality_metrics takes the beside-the-fit sample exactly when it is the sample it would draw."""
    from core.metrics import quality_metrics, silhouette_sample

    X, y = random_case("plain", n=900, dim=16, k=5, seed=2)
    pre = silhouette_sample(X, sample_size=300, seed=7)
    plain = quality_metrics(X, y, sample_size=300, seed=7)
    assert quality_metrics(X, y, sample_size=300, seed=7, presampled=pre)["silhouette_score"] == (
        pytest.approx(plain["silhouette_score"], abs=1e-6)
    )
    # another seed or sample size, or noise (the sample is then drawn over the clustered points
    # only): the metrics draw their own and ignore the wrong distances
    wrong = silhouette_sample(X[::-1], sample_size=300, seed=7)
    assert quality_metrics(X, y, sample_size=300, seed=8, presampled=wrong) == quality_metrics(
        X, y, sample_size=300, seed=8
    )
    noisy = y.copy()
    noisy[::10] = -1
    assert quality_metrics(X, noisy, sample_size=300, seed=7, presampled=wrong) == quality_metrics(
        X, noisy, sample_size=300, seed=7
    )


# for the code run by in_a_fresh_process: CPU ticks (user + system) of each thread of the process
TICKS = """
import os


def ticks():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[tid] = int(fields[11]) + int(fields[12])
    return out
"""


def in_a_fresh_process(code: str) -> None:
    """BLAS limits are process-wide: an earlier test's fit still running in a daemon thread (a
    canceled run's restarts) enters and leaves one_blas_thread and restores the limit it found,
    so these checks run where no other thread can. The code may call `ticks()` (TICKS)."""
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", TICKS + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_threads_follow_the_blas_limit():
    """A worker pool process limits BLAS to its threads per run: the silhouette uses as many."""
    in_a_fresh_process(
        """
        from threadpoolctl import threadpool_limits
        from core import scores
        with threadpool_limits(1):
            assert scores.workers() == 1
        with threadpool_limits(2):
            assert scores.workers() == 2
        """
    )


def test_one_blas_thread_is_counted_across_threads():
    """Overlapping users on two threads: the limit is restored once, when the last one leaves,
    and the threads a run may use read as the limit outside meanwhile."""
    in_a_fresh_process(
        """
        import threading
        import numpy  # loads the BLAS library threadpoolctl then finds
        from threadpoolctl import threadpool_limits
        from core import threads
        inside, leave = threading.Event(), threading.Event()
        def beside():
            inside.set()
            leave.wait(10)
            return threads.run_threads(), threads._blas_users
        with threadpool_limits(2, user_api="blas"):
            job = threads.beside_fit(beside)
            assert inside.wait(10)
            with threads.one_blas_thread():
                assert threads._blas_users == 2 and threads.run_threads() == 2
            assert threads._blas_users == 1  # the beside job is still inside: nothing restored
            leave.set()
            assert job.result(10) == (2, 1)
            assert threads._blas_users == 0
            assert threads._blas_threads() == 2
        """
    )


def test_one_blas_thread_keeps_the_gil_and_scans_the_libraries_once():
    """Entering and leaving one_blas_thread calls OpenBLAS through ctypes.PyDLL (the GIL kept: no
    wait behind a thread running Python) with setters found once, scanned again only after an
    import, and the limit it sets is the one threadpoolctl reads."""
    in_a_fresh_process(
        """
        import ctypes
        import numpy, scipy.linalg  # both scipy-openblas libraries
        from threadpoolctl import threadpool_info
        from core import threads
        with threads.one_blas_thread():
            assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {1}
        first = threads._blas_setters()
        assert first and threads._blas_setters() is first  # no import since: no scan
        openblas = [f for f in first if isinstance(f, ctypes._CFuncPtr)]
        assert openblas and all(f._flags_ & ctypes._FUNCFLAG_PYTHONAPI for f in openblas)
        import colorsys  # noqa: F401 - any new module
        assert threads._blas_setters() is not first
        """
    )


def test_one_blas_thread_holds_in_a_worker_thread():
    """Runs compute in worker threads, where threadpoolctl's `openblas_set_num_threads` changed
    nothing (a GEMM inside its limit still ran on every BLAS thread). Inside one_blas_thread a
    worker thread's products run on that thread alone; outside, BLAS's own threads share them
    (which shows the CPU count below sees them). CPU time per thread, from /proc, not timing."""
    in_a_fresh_process(
        """
        import os, threading
        import numpy as np
        from threadpoolctl import threadpool_info
        from core import threads
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        if not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2 or min(blas) < 2:
            raise SystemExit(0)  # nothing to observe: BLAS runs on one thread anyway
        A = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)

        def share_of_others(limited):
            me = str(threading.get_native_id())
            A @ A  # BLAS's threads exist before the count starts
            before = ticks()
            if limited:
                with threads.one_blas_thread():
                    for _ in range(40):
                        A @ A
            else:
                for _ in range(40):
                    A @ A
            after = ticks()
            used = {t: after[t] - before.get(t, 0) for t in after}
            others = sum(v for t, v in used.items() if t != me)
            return others / max(1, used[me] + others)

        with threads.one_blas_thread():  # once on the main thread: after that (threadpoolctl
            A @ A  # limits, scipy-openblas 0.3.31) the worker thread's limit changed nothing
        result = {}
        def work():
            result["free"], result["limited"] = share_of_others(False), share_of_others(True)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        assert result["free"] > 0.25, result
        assert result["limited"] < 0.1, result
        """
    )


def test_the_metrics_leave_no_blas_thread_spinning():
    """After an OpenBLAS call on several threads its worker threads spin for ~0.1 s, taking a
    core from what follows (a run's labels and artifacts). The pipeline's metrics (silhouette
    sums over the sample, the centroid products) run on one BLAS thread, so once a run's pipeline
    returns no other thread of the process is busy. CPU time per thread, from /proc, not timing."""
    in_a_fresh_process(
        """
        import os, threading, time
        from concurrent.futures import ThreadPoolExecutor
        import numpy as np
        from sklearn.datasets import make_blobs
        from threadpoolctl import threadpool_info
        from core.algorithms import validate_params
        from core.pipeline import PipelineConfig, run_pipeline
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        if not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2 or min(blas) < 2:
            raise SystemExit(0)  # nothing to observe: BLAS runs on one thread anyway

        X, _ = make_blobs(n_samples=6000, centers=50, n_features=64, random_state=0)
        X = X.astype(np.float32)
        A = np.random.default_rng(0).random((800, 800), dtype=np.float32)
        config = PipelineConfig("kmeans", validate_params("kmeans", {"n_clusters": 50}))
        me = str(threading.get_native_id())

        def busy_after(work):
            with ThreadPoolExecutor(1) as pool:  # as a run: the pipeline in a worker thread
                pool.submit(work).result()
            before = ticks()
            time.sleep(0.3)
            after = ticks()
            return {t: after[t] - before.get(t, 0) for t in after if t != me and after[t] > before.get(t, 0)}

        # a bare product on several threads does leave them busy (what the count must see) ...
        spun = [busy_after(lambda: A @ A) for _ in range(3)]
        # ... the pipeline, whose metrics come last, does not (once its runtimes have started:
        # oneDAL's first fit leaves threads of its own busy for a moment)
        run_pipeline(X, config)
        left = [busy_after(lambda: run_pipeline(X, config)) for _ in range(3)]
        assert max(sum(b.values()) for b in spun) >= 5, spun  # CPU ticks (10 ms) in 0.3 s
        assert max(sum(b.values()) for b in left) <= 2, (left, sorted(os.listdir("/proc/self/task")))
        """
    )
