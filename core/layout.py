"""2-D / 3-D layout coordinates of a run's points, and keeping them stable across re-runs (pure).

A layout is an affine projection of the clustered space, `coords = X @ weights + offset`: PCA to
`n_components` (fit on a seeded sample of at most `fit_rows(D)` points, applied to all), divided by
one scalar so the fitting run's coordinates span [-1, 1] (one scale for every axis keeps the
aspect ratio). `layout_stability` says what a re-run does with the previous run's layout:

- `transform`: project with the previous run's weights and offset, so the same documents land
  where they were and new ones fall into the same frame (needs the same dimensions and
  `n_components`);
- `align`: fit afresh, then map the fresh coordinates onto the previous run's coordinates of
  the documents both runs share by orthogonal Procrustes with scale and translation (rotation
  and reflection: PCA axes come back flipped or swapped between fits) — reported `aligned`;
- `none` / null: a fresh layout.

When the previous layout cannot be used the run gets a fresh layout, `applied = "none"` and a
reason saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.centroids import positions_in

FIT_SAMPLE = 10_000  # points the PCA is fitted on at most; the axes barely move beyond
# ... and at most this many values: the covariance product costs rows × D², and the layout runs
# beside the fit on one core (worker.layout_stage), where 10k rows at D = 768 took 0.27 s
FIT_CELLS = 3_000_000
MIN_SHARED = 3  # fewest shared documents `align` fits on (and at least n_components + 1)
MODES = ("none", "transform", "align")
EXTRA = 8  # top_eigenpairs: block vectors beyond the k wanted (more: fewer, costlier products)
RITZ_STILL = 1e-9  # ... and the relative move of the top Ritz values at which it stops


@dataclass
class Projection:
    """coords = X @ weights + offset; weights (D, k) float32, offset (k,) float32."""

    weights: np.ndarray
    offset: np.ndarray

    @property
    def dimensions(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[1])

    def apply(self, X: np.ndarray) -> np.ndarray:
        # X @ W then + b: never materialises the centred N x D copy that (X - mean) @ C would
        out = np.asarray(X, dtype=np.float32) @ self.weights
        out += self.offset
        return out


@dataclass
class Previous:
    """What a re-run knows of the previous completed run's layout (either part may be missing)."""

    run_id: str
    projection: Projection | None = None
    document_ids: np.ndarray | None = None  # (m,) str
    coordinates: np.ndarray | None = None  # (m, k) float32, aligned with document_ids


@dataclass
class Layout:
    coordinates: np.ndarray  # (N, k) float32
    projection: Projection  # what produced them (the frame a later `transform` re-run reuses)
    applied: str  # "none" | "transform" | "aligned"
    reason: str | None = None  # why a requested stability was not applied
    previous_run_id: str | None = None

    @property
    def n_components(self) -> int:
        return int(self.coordinates.shape[1])


def fit_rows(d: int) -> int:
    """Points the PCA is fitted on at D = `d` (3,906 at 768; 10,000 up to 300)."""
    return max(2_000, min(FIT_SAMPLE, FIT_CELLS // max(d, 1)))


def fit_projection(
    X: np.ndarray, n_components: int, seed: int = 42, fit_sample: int | None = None
) -> Projection:
    """PCA of `X` to `n_components`, scaled so the projected `X` spans [-1, 1] (`_fit`)."""
    return _fit(X, n_components, seed, fit_sample)[0]


def _fit(
    X: np.ndarray, n_components: int, seed: int = 42, fit_sample: int | None = None
) -> tuple[Projection, np.ndarray]:
    """(The scaled PCA projection of `X`, the coordinates of `X` under it.)

    Fit on a seeded sample for large N (the top eigenvectors of the sample covariance: float32 products,
    float64 eigensolver); each axis' sign is fixed (its largest loading positive) so the same data
    gives the same picture. Axes beyond the data's rank (D or N too small) are zero.
    """
    X = np.asarray(X, dtype=np.float32)
    n, d = X.shape
    if n_components not in (2, 3):
        raise ValueError(f"n_components: must be 2 or 3, got {n_components}")
    rows = X
    fit_sample = fit_sample or fit_rows(d)
    if n > fit_sample:
        rows = X[np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))]
    mean = rows.mean(axis=0, dtype=np.float64)
    centred = rows - mean.astype(np.float32)
    cov = (centred.T @ centred).astype(np.float64) / max(1, rows.shape[0] - 1)
    k = min(n_components, d)
    values, top = top_eigenpairs(cov, k)
    top[:, values <= 1e-12 * max(1.0, float(values[0]))] = 0.0  # no variance: no axis
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(k)])
    top *= np.where(signs == 0, 1.0, signs)
    components = np.zeros((d, n_components), dtype=np.float64)
    components[:, :k] = top
    weights = components.astype(np.float32)
    offset = (-(mean @ components)).astype(np.float32)
    return _scaled(Projection(weights, offset), X)


def top_eigenpairs(
    cov: np.ndarray, k: int, *, tol: float = 1e-8, max_iter: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(The `k` largest eigenvalues of symmetric PSD float64 `cov`, descending; unit eigenvectors
    for them as columns.)

    Subspace iteration on a seeded block of k + EXTRA vectors with a Rayleigh–Ritz step every
    four products, until the k pairs' residuals fall below `tol` × the largest eigenvalue, the k
    Ritz values stop moving, or `max_iter` products (~27 ms at D = 768). With a gap after the top
    k the vectors match scipy's to ~1e-9; on a flat spectrum (e.g. 50 random blob centres, or
    noise) they stop short, within ~1e-4 of the top variance: for a 2-D picture the directions
    are then interchangeable anyway. All numpy: scipy.linalg.eigh holds the GIL for its ~25 ms
    at D = 768, and the layout runs beside the fit, where that stalled k-means++ seeding's
    Python loop (measured: seeding 175 → 400 ms beside repeated eighs; numpy's products and
    factorisations release the GIL). Small D: numpy's full eigh."""
    d = cov.shape[0]
    if d <= 4 * (k + EXTRA):
        values, vectors = np.linalg.eigh(cov)
        return values[::-1][:k].copy(), np.ascontiguousarray(vectors[:, ::-1][:, :k])
    block = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k + EXTRA)))[0]
    before: np.ndarray | None = None
    for i in range(max_iter):
        product = cov @ block
        if i % 4 != 3 and i != max_iter - 1:
            block = np.linalg.qr(product)[0]
            continue
        values, ritz = np.linalg.eigh(block.T @ product)  # Rayleigh–Ritz within the block
        order = np.argsort(values)[::-1]
        values, ritz = values[order], ritz[:, order]
        vectors, images = block @ ritz[:, :k], product @ ritz[:, :k]
        scale = max(float(values[0]), 1e-300)
        residual = float(np.linalg.norm(images - vectors * values[:k], axis=0).max())
        if residual <= tol * scale or (
            before is not None and float(np.abs(values[:k] - before).max()) <= RITZ_STILL * scale
        ):
            break
        before = values[:k].copy()
        block = np.linalg.qr(product @ ritz)[0]  # the Ritz vectors' images, the k leading first
    return np.maximum(values[:k], 0.0), np.ascontiguousarray(vectors)


def _scaled(raw: Projection, X: np.ndarray) -> tuple[Projection, np.ndarray]:
    """`raw` scaled so `X` spans [-1, 1], and the coordinates of X under it: one product over X."""
    coords = raw.apply(X)
    extent = float(np.abs(coords).max()) if coords.size else 0.0
    if not (extent > 0 and np.isfinite(extent)):
        return raw, coords
    coords /= np.float32(extent)
    scaled = Projection((raw.weights / extent).astype(np.float32), (raw.offset / extent).astype(np.float32))
    return scaled, coords


def procrustes(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(s, R, t) minimising ||s * source @ R + t - target|| with R orthogonal (reflections allowed).
    None when `source` has no spread (nothing to rotate)."""
    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    a0, b0 = a.mean(axis=0), b.mean(axis=0)
    ac, bc = a - a0, b - b0
    norm = float((ac * ac).sum())
    if norm <= 1e-18:
        return None
    u, sv, vt = np.linalg.svd(ac.T @ bc)
    rotation = u @ vt
    scale = float(sv.sum()) / norm
    if scale <= 0:
        return None
    shift = b0 - scale * a0 @ rotation
    return scale, rotation, shift


def _compose(p: Projection, scale: float, rotation: np.ndarray, shift: np.ndarray) -> Projection:
    """The projection whose output is `scale * p(X) @ rotation + shift`."""
    w = scale * (p.weights.astype(np.float64) @ rotation)
    b = scale * (p.offset.astype(np.float64) @ rotation) + shift
    return Projection(w.astype(np.float32), b.astype(np.float32))


def shared_rows(ids: np.ndarray, previous_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into `ids`, into `previous_ids`) of the document ids both hold."""
    _, here, there = np.intersect1d(
        np.asarray(ids).astype(str), np.asarray(previous_ids).astype(str), return_indices=True
    )
    return here, there


def compute_layout(
    X: np.ndarray,
    n_components: int,
    *,
    seed: int = 42,
    mode: str | None = None,
    previous: Previous | None = None,
    document_ids: np.ndarray | None = None,
    fit_sample: int | None = None,
) -> Layout:
    """Coordinates for every row of `X` under `mode` (see the module docstring)."""
    X = np.asarray(X, dtype=np.float32)
    if mode not in (None, *MODES):
        raise ValueError(f"layout_stability: must be one of {MODES} or null, got {mode!r}")
    reason: str | None = None
    if mode in ("transform", "align"):
        reason = _unusable(mode, X, n_components, previous, document_ids)
    prev_id = previous.run_id if previous is not None else None
    if mode == "transform" and reason is None and previous is not None and previous.projection is not None:
        return Layout(previous.projection.apply(X), previous.projection, "transform", None, prev_id)
    fresh, coords = _fit(X, n_components, seed, fit_sample)
    if mode == "align" and reason is None and previous is not None:
        assert previous.document_ids is not None and previous.coordinates is not None
        assert document_ids is not None
        here, there = shared_rows(document_ids, previous.document_ids)
        fit = procrustes(coords[here], previous.coordinates[there])
        if fit is None:
            reason = "align: the shared documents all sit at one point of the fresh layout"
        else:
            moved = _compose(fresh, *fit)
            return Layout(moved.apply(X), moved, "aligned", None, prev_id)
    return Layout(coords, fresh, "none", reason, prev_id if reason else None)


def _unusable(
    mode: str, X: np.ndarray, k: int, previous: Previous | None, document_ids: np.ndarray | None
) -> str | None:
    """Why the previous layout cannot serve `mode` (None: it can)."""
    if previous is None:
        return f"{mode}: no previous completed run of this cluster has a layout"
    where = f"{mode}: previous run '{previous.run_id}'"
    if mode == "transform":
        p = previous.projection
        if p is None:
            return f"{where} has no stored projection"
        if p.dimensions != X.shape[1]:
            return f"{where} was laid out from {p.dimensions}-dimensional vectors, this run has {X.shape[1]}"
        if p.n_components != k:
            return f"{where} has a {p.n_components}-D layout, this run asks for {k}-D"
        return None
    if previous.coordinates is None or previous.document_ids is None:
        return f"{where} has no stored coordinates"
    if previous.coordinates.shape[1] != k:
        return f"{where} has a {previous.coordinates.shape[1]}-D layout, this run asks for {k}-D"
    if document_ids is None:
        return f"{mode}: this run's document ids are unknown"
    shared = len(shared_rows(document_ids, previous.document_ids)[0])
    need = max(MIN_SHARED, k + 1)
    if shared < need:
        return f"{where} shares {shared} documents with this run, {need} are needed to align"
    return None


def centroid_coordinates(coordinates: np.ndarray, labels: np.ndarray, label_values: np.ndarray) -> np.ndarray:
    """(len(label_values), k) float64: the mean of each cluster's members' coordinates (NaN when a
    cluster has no members)."""
    coords = np.asarray(coordinates, dtype=np.float64)
    values = np.asarray(label_values)
    out = np.full((len(values), coords.shape[1]), np.nan)
    if not len(values):
        return out
    pos = positions_in(labels, values)
    hit = pos >= 0
    idx = pos[hit]
    counts = np.bincount(idx, minlength=len(values))
    for j in range(coords.shape[1]):
        sums = np.bincount(idx, weights=coords[hit, j], minlength=len(values))
        out[:, j] = np.divide(sums, counts, out=np.full(len(values), np.nan), where=counts > 0)
    return out
