"""Fitting scaling laws, and intervals for every parameter.

Why it is built this way:

* The paper's line (OLS of log10 y on log10 x) is fitted to the per-x means:
  seeds of one x share that x's learning rate and validation data, so they
  are one cluster, and the line's error has n_x - 2 degrees of freedom. Its
  intervals are exact Student-t ones (calibrated in
  tests/test_fit_calibration.py), and draws from the same t feed comparisons,
  bands and extrapolations.
* Every bootstrap here is expressed as *weights*: a draw that picks point i
  twice gives it weight 2. Non-linear fits then take the same weights in their
  objective, so one code path serves point fits (weights = 1) and refits.
* Offset power laws (E + A x^-alpha, Chinchilla's E + A/N^alpha + B/D^beta)
  are fitted on log L with L = logsumexp(e, a - alpha log N, b - beta log D),
  as Hoffmann et al. and Epoch AI did. The objective is ill-conditioned and,
  with a Huber delta of 1e-3, small (~1e-3): scipy's default L-BFGS-B
  tolerances then stop at the start and bootstrap intervals come out ~20x
  too narrow. Two remedies, both used: the objective is divided by delta
  (so it is O(n), and relative tolerances mean something) and tolerances are
  tight; and starting points come from variable projection (for each
  exponent pair on a grid, E, A, B >= 0 solved by non-negative least squares
  on relative residuals), which is well conditioned and finds the basin.
* log x is centred at its geometric mean inside the optimiser, which removes
  the strong a-alpha coupling; parameters are converted back before they
  leave this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares, minimize, nnls

from .laws import ChinchillaLaw, LogLogLine, SaturatingPowerLaw

CHINCHILLA_HUBER_DELTA = 1e-3
CI_LEVEL = 0.95


# ---------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def fmt(self, digits: int = 3) -> str:
        return f"{_g(self.estimate, digits)} [{_g(self.low, digits)}, {_g(self.high, digits)}]"


def _g(v: float, digits: int) -> str:
    if v is None or not np.isfinite(v):
        return "nan"
    return f"{v:.{digits}g}" if abs(v) >= 1e4 or abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def percentile_interval(estimate: float, draws, level: float = CI_LEVEL) -> Interval:
    """Percentile interval of the finite bootstrap draws around `estimate`."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return Interval(float(estimate), float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))


# ---------------------------------------------------------------- resampling
def bootstrap_weights(n_boot: int, rng: np.random.Generator, *, units=None,
                      x=None, min_distinct: int = 2, n_points: int | None = None) -> np.ndarray:
    """Resampling counts, shape (n_boot, n_points): row b says how often each point is drawn.

    units: a label per point; points sharing a label (one trial's rows) are
        drawn together, which keeps correlated rows from looking like
        independent evidence. Default: every point is its own unit.
    x, min_distinct: a draw whose points cover fewer than `min_distinct`
        distinct x values cannot identify the law (a line needs 2); such draws
        are redrawn, i.e. the bootstrap is conditioned on identifiability.
    """
    if n_points is None:
        n_points = len(units) if units is not None else len(x)
    units = np.arange(n_points) if units is None else np.asarray(units)
    unit_ids, unit_of_point = np.unique(units, return_inverse=True)
    n_units = len(unit_ids)

    def draw(k: int) -> np.ndarray:
        picks = rng.integers(0, n_units, size=(k, n_units))
        unit_counts = np.zeros((k, n_units))
        np.add.at(unit_counts, (np.repeat(np.arange(k), n_units), picks.ravel()), 1.0)
        return unit_counts[:, unit_of_point]

    weights = draw(n_boot)
    if x is not None and min_distinct > 1:
        x = np.asarray(x)
        _, x_code = np.unique(x, return_inverse=True)
        for _ in range(200):
            distinct = _distinct_per_row(weights, x_code)
            bad = np.flatnonzero(distinct < min_distinct)
            if bad.size == 0:
                break
            weights[bad] = draw(bad.size)
        else:
            raise ValueError(
                f"bootstrap: could not draw resamples covering {min_distinct} distinct x values; "
                "add points at more distinct x values")
    return weights


def _distinct_per_row(weights: np.ndarray, x_code: np.ndarray) -> np.ndarray:
    per_x = np.zeros((weights.shape[0], x_code.max() + 1))
    np.add.at(per_x.T, x_code, weights.T)
    return (per_x > 0).sum(axis=1)


# ---------------------------------------------------------------- the paper's line
def fit_loglog(x, y, weights=None) -> LogLogLine:
    """OLS of log10(y) on log10(x): the EBT paper's scaling-rate line."""
    slope, intercept = _weighted_ols(np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float)),
                                     None if weights is None else np.asarray(weights, float)[None, :])
    return LogLogLine(slope=float(slope[0]), intercept=float(intercept[0]))


def _weighted_ols(u: np.ndarray, v: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    if weights is None:
        weights = np.ones((1, u.size))
    sw = weights.sum(axis=1)
    su, sv = weights @ u, weights @ v
    suu, suv = weights @ (u * u), weights @ (u * v)
    denom = sw * suu - su * su
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (sw * suv - su * sv) / denom
        intercept = (sv - slope * su) / sw
    slope = np.where(np.abs(denom) > 1e-12 * np.maximum(sw * suu, 1e-300), slope, np.nan)
    return slope, np.where(np.isfinite(slope), intercept, np.nan)


# ---------------------------------------------------------------- offset power laws
def _huber(r: np.ndarray, delta: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Loss and derivative per residual, in units of delta (so values are O(|r|/delta)).

    delta=None means plain least squares (0.5 r^2), used where points are few
    and have no outliers to guard against.
    """
    if delta is None:
        return 0.5 * r * r, r
    a = np.abs(r)
    small = a <= delta
    loss = np.where(small, 0.5 * r * r / delta, a - 0.5 * delta)
    grad = np.where(small, r / delta, np.sign(r))
    return loss, grad


class _LseModel:
    """log L = logsumexp(e, a_k - alpha_k * (log x_k - c_k)) for K power terms.

    The optimiser's vector is laid out as (e, a_1..a_K, t_1..t_K) where
    t = alpha, or t = log alpha when `positive_exponents` (so a falling law
    needs no bounds); `split` and `join` are the one place that knows the
    layout. c_k centres log x_k.

    The optimiser is BFGS, not L-BFGS-B: scipy's L-BFGS-B calls threaded
    BLAS on 5-element vectors, and on a busy 2-core machine its threads spin
    waiting for a core, making each fit ~20x slower; BFGS on the same
    objective reaches the same optimum (checked on the Chinchilla points).
    """

    def __init__(self, log_x: np.ndarray, log_L: np.ndarray, delta: float | None,
                 positive_exponents: bool = False):
        self.centre = log_x.mean(axis=0)
        self.z = log_x - self.centre          # (n, K)
        self.log_L = log_L
        self.delta = delta
        self.K = log_x.shape[1]
        self.positive = positive_exponents

    def split(self, theta):
        K = self.K
        t = theta[1 + K:1 + 2 * K]
        return theta[0], theta[1:1 + K], (np.exp(t) if self.positive else t)

    def join(self, e, a, alpha):
        alpha = np.atleast_1d(alpha)
        t = np.log(np.maximum(alpha, 1e-12)) if self.positive else alpha
        return np.concatenate([[e], np.atleast_1d(a), t])

    @property
    def e_lower(self) -> float:
        """Lower bound on e = log E in least-squares fits: E >= L_max * e^-30 (~1e-13)."""
        return float(self.log_L.max()) - 30.0

    def lse_batch(self, theta):
        """log L per point for each row of theta (B, P): the one place the law is written.

        Returns lse (B, n), soft (B, n, 1+K) = d lse / d term (the softmax of
        the terms e, a_k - alpha_k z_k), and alpha (B, K).
        """
        theta = np.atleast_2d(theta)
        K = self.K
        e, a, t = theta[:, :1], theta[:, 1:1 + K], theta[:, 1 + K:1 + 2 * K]
        alpha = np.exp(t) if self.positive else t
        terms = np.concatenate([np.broadcast_to(e[:, None, :], (theta.shape[0], self.z.shape[0], 1)),
                                a[:, None, :] - alpha[:, None, :] * self.z[None]], axis=2)
        top = terms.max(axis=2, keepdims=True)
        expo = np.exp(terms - top)
        total = expo.sum(axis=2, keepdims=True)
        return (top + np.log(total))[..., 0], expo / total, alpha

    def _lse(self, theta):
        lse, soft, alpha = self.lse_batch(theta)
        return lse[0], soft[0], alpha[0]

    def objective(self, theta, w):
        lse, soft, alpha = self._lse(theta)
        loss, dloss = _huber(lse - self.log_L, self.delta)
        # elementwise sums, not `@`: tiny vectors, and no threaded BLAS call per evaluation
        g = w * dloss
        gs = g[:, None] * soft
        grad_e = gs[:, 0].sum()
        grad_a = gs[:, 1:].sum(axis=0)
        grad_t = -(gs[:, 1:] * self.z).sum(axis=0)
        if self.positive:
            grad_t = grad_t * alpha           # chain rule through alpha = exp(t)
        return float((w * loss).sum()), np.concatenate([[grad_e], grad_a, grad_t])

    def minimise(self, theta0, w):
        if self.delta is None:
            return self._least_squares(theta0, w)
        # The objective is in units of the Huber delta (O(n)), so gtol 1e-9 is
        # tight: scipy's defaults on the raw ~1e-3 objective stop at the start.
        res = minimize(self.objective, theta0, args=(w,), jac=True, method="BFGS",
                       options={"gtol": 1e-9, "maxiter": 5000})
        return res.x, res.fun

    def _least_squares(self, theta0, w):
        """Plain least squares on log L by trust-region Gauss-Newton.

        Used for the few-point saturating fits. e is bounded below (E >=
        L_max * 1e-13), else a pure power law sends E -> 0 and e -> -inf
        along a flat valley that a quasi-Newton method crawls down for
        thousands of steps.
        """
        sw = np.sqrt(w)

        def resid(theta):
            return sw * (self._lse(theta)[0] - self.log_L)

        def jac(theta):
            _, soft, alpha = self._lse(theta)
            d_t = -soft[:, 1:] * self.z * (alpha if self.positive else 1.0)
            return sw[:, None] * np.concatenate([soft, d_t], axis=1)

        lower = np.full(theta0.size, -np.inf)
        lower[0] = self.e_lower
        x0 = np.maximum(theta0, lower + 1e-9)
        res = least_squares(resid, x0, jac=jac, bounds=(lower, np.inf), method="trf",
                            ftol=1e-12, xtol=1e-10, gtol=1e-12, max_nfev=100)
        return res.x, float(res.cost)

    def batch_least_squares(self, theta0, W, iters: int = 60):
        """Least-squares refits for every row of the weight matrix W at once.

        A Levenberg-Marquardt iteration vectorised over bootstrap draws: each
        draw keeps its own damping and stops when its cost stops falling.
        Hundreds of few-point refits then cost about as much as one scipy
        call each would in Python overhead alone. Same model, bound and
        objective as `_least_squares`; used warm-started from the point fit.
        """
        B, P = W.shape[0], theta0.size
        theta = np.tile(theta0, (B, 1))
        lower = self.e_lower
        lam = np.full(B, 1e-3)
        sw = np.sqrt(W)

        def resid_jac(th):
            lse, soft, alpha = self.lse_batch(th)
            r = sw * (lse - self.log_L)
            d_t = -soft[..., 1:] * self.z[None] * (alpha[:, None, :] if self.positive else 1.0)
            J = sw[..., None] * np.concatenate([soft, d_t], axis=2)
            return r, J

        r, J = resid_jac(theta)
        cost = 0.5 * (r * r).sum(axis=1)
        active = np.ones(B, dtype=bool)
        eye = np.eye(P)
        for _ in range(iters):
            if not active.any():
                break
            JtJ = np.einsum("bni,bnj->bij", J, J)
            Jtr = np.einsum("bni,bn->bi", J, r)
            A = JtJ + lam[:, None, None] * (JtJ * eye + 1e-12 * eye)
            try:
                step = -np.linalg.solve(A, Jtr[..., None])[..., 0]
            except np.linalg.LinAlgError:
                # a draw where a term has vanished (its softmax weight underflows to 0) and
                # the damping has decayed to nothing: A is exactly singular there. Least
                # squares gives the minimum-norm step, which leaves that term alone.
                step = -(np.linalg.pinv(A) @ Jtr[..., None])[..., 0]
            trial = theta + step
            trial[:, 0] = np.maximum(trial[:, 0], lower)
            r_new, J_new = resid_jac(trial)
            cost_new = 0.5 * (r_new * r_new).sum(axis=1)
            better = active & np.isfinite(cost_new) & (cost_new <= cost)
            # converged: cost change below 1e-10 relative, or the step no longer moves theta
            done = better & ((cost - cost_new <= 1e-10 * np.maximum(cost, 1e-30))
                             | (np.abs(step).max(axis=1) < 1e-9))
            theta[better], r[better], J[better] = trial[better], r_new[better], J_new[better]
            cost = np.where(better, cost_new, cost)
            lam = np.where(better, lam / 3.0, lam * 4.0)
            active &= ~done & (lam < 1e12)
        return theta, cost

    def varpro_starts(self, alphas_grid, w, n_keep: int, log_x_raw_unused=None):
        """Variable projection: for each exponent tuple, E and the A_k by NNLS.

        Residuals are relative ((E + sum A_k x_k^-alpha_k) / L - 1), the
        linear stand-in for a log residual, so the solve is an ordinary NNLS.
        Returns the `n_keep` best starting vectors under the real objective.
        """
        L = np.exp(self.log_L)
        sw = np.sqrt(w)
        keep = w > 0
        candidates = []
        for alpha in alphas_grid:
            alpha = np.atleast_1d(alpha)
            cols = np.concatenate([np.ones((self.z.shape[0], 1)), np.exp(-alpha * self.z)], axis=1)
            design = cols / L[:, None] * sw[:, None]
            scale = np.linalg.norm(design[keep], axis=0)
            scale[scale == 0] = 1.0
            coef, _ = nnls(design / scale, sw, maxiter=200)
            coef = coef / scale
            logs = np.log(np.maximum(coef, 1e-12 * max(coef.max(), 1e-12)))
            theta = self.join(logs[0], logs[1:], alpha)
            candidates.append((self.objective(theta, w)[0], theta))
        candidates.sort(key=lambda c: c[0])
        return [theta for _, theta in candidates[:n_keep]]


def _fit_lse(model: _LseModel, w, grid, n_starts: int, extra_starts=()):
    starts = list(extra_starts) + model.varpro_starts(grid, w, n_starts)
    best = None
    for theta0 in starts:
        theta, fun = model.minimise(theta0, w)
        if np.all(np.isfinite(theta)) and (best is None or fun < best[1]):
            best = (theta, fun)
    return best


def _exponent_grid(k: int, n: int) -> list:
    values = np.linspace(0.02, 1.5, n)
    if k == 1:
        return list(values)
    a, b = np.meshgrid(values, values, indexing="ij")
    return list(np.stack([a.ravel(), b.ravel()], axis=1))


# -- Chinchilla
@dataclass(frozen=True, eq=False)
class ChinchillaFit:
    """A Chinchilla law, its bootstrap intervals and the draws behind them."""

    law: ChinchillaLaw
    intervals: dict[str, Interval]
    draws: dict[str, np.ndarray]
    n_points: int
    objective: float
    N: np.ndarray = None         # the points fitted (kept for figures)
    D: np.ndarray = None
    L: np.ndarray = None
    identified: dict[str, str] = None   # parameter -> "" or why it is not identified in this range


def _chinchilla_from_theta(model: _LseModel, theta) -> ChinchillaLaw:
    e, a, alpha = model.split(theta)
    # undo the centring: a_k - alpha_k (log x_k - c_k) = (a_k + alpha_k c_k) - alpha_k log x_k
    log_A, log_B = a + alpha * model.centre
    with np.errstate(over="ignore"):      # a wild refit's A may overflow to inf: fine for percentiles
        return ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(log_A)), B=float(np.exp(log_B)),
                             alpha=float(alpha[0]), beta=float(alpha[1]))


def fit_chinchilla(N, D, L, *, delta: float = CHINCHILLA_HUBER_DELTA, n_boot: int = 1000,
                   seed: int = 0, units=None, grid_size: int = 30, n_starts: int = 4,
                   boot_grid_size: int = 0) -> ChinchillaFit:
    """Fit L = E + A/N^alpha + B/D^beta as Epoch AI did, with bootstrap intervals.

    Objective: Huber(delta) of log L_pred - log L, summed over points (Epoch's
    and Hoffmann et al.'s choice; delta = 1e-3 makes it nearly an L1 fit, so a
    few stray points do not drag the exponents). Starts: the `n_starts` best
    points of a `grid_size`^2 variable-projection grid over (alpha, beta),
    each refined by L-BFGS-B with tight tolerances.

    Bootstrap: points (or `units`) resampled with replacement, `n_boot` refits,
    each started from the point estimate and from an interior start (E at
    half the lowest loss, the rest at the estimate), keeping the better: a
    point fit with E at 0 leaves the e-direction flat, and refits started
    there alone never leave it (the old zero-width E intervals). If
    boot_grid_size > 0, the best start of a coarser projection grid on the
    resample is tried too. Parameters at a bound or with a degenerate
    bootstrap are marked in `identified` and get no interval.
    """
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    if not (np.isfinite(L).all() and (L > 0).all()):
        raise ValueError("Chinchilla fit needs finite losses > 0 (it is fitted on log L)")
    model = _LseModel(np.log(np.stack([N, D], axis=1)), np.log(L), delta)
    w1 = np.ones(N.size)
    theta_hat, fun = _fit_lse(model, w1, _exponent_grid(2, grid_size), n_starts)
    law = _chinchilla_from_theta(model, theta_hat)
    interior = theta_hat.copy()
    interior[0] = np.log(0.5 * L.min())

    names = list(law.params())
    draws = {k: np.full(n_boot, np.nan) for k in names}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        weights = bootstrap_weights(n_boot, rng, units=units, n_points=N.size)
        boot_grid = _exponent_grid(2, boot_grid_size) if boot_grid_size else []
        for i, w in enumerate(weights):
            best = _fit_lse(model, w, boot_grid, 1 if boot_grid else 0, extra_starts=[theta_hat, interior])
            if best is None:
                continue
            for k, v in _chinchilla_from_theta(model, best[0]).params().items():
                draws[k][i] = v
    identified = {k: _degenerate(v, draws[k]) for k, v in law.params().items()}
    if law.E < 1e-6 * L.min():
        identified["E"] = "E at its lower bound 0: the data show no floor in the measured range"
    intervals = {k: (percentile_interval(v, draws[k]) if not identified[k]
                     else Interval(v, float("nan"), float("nan"))) for k, v in law.params().items()}
    return ChinchillaFit(law=law, intervals=intervals, draws=draws, n_points=int(N.size),
                         objective=float(fun) * (delta or 1.0), N=N, D=D, L=L, identified=identified)


# -- identification
NOT_IDENTIFIED = "not identified in this range"


def _degenerate(estimate: float, draws) -> str:
    """Why a parameter's draws cannot give an interval ('' when they can)."""
    draws = np.asarray(draws, float)
    finite = draws[np.isfinite(draws)]
    if draws.size == 0:
        return ""
    if finite.size < 0.5 * draws.size:
        return f"only {finite.size} of {draws.size} refits converged"
    lo, hi = np.percentile(finite, [2.5, 97.5])
    if hi - lo <= 1e-6 * max(abs(estimate), 1e-300):
        return "every refit returns the same value (a degenerate bootstrap)"
    if lo > 0 and hi / lo > 1e6:
        return "its 95% bootstrap interval spans more than 6 orders of magnitude"
    return ""


# -- one-variable saturating law
@dataclass(frozen=True, eq=False)
class SaturatingFit:
    law: SaturatingPowerLaw
    intervals: dict[str, Interval]
    draws: dict[str, np.ndarray]
    n_points: int
    n_boot_ok: int
    identified: dict[str, str] = None   # parameter -> "" or why it is not identified in this range
    notes: tuple[str, ...] = ()


def _saturating_from_theta(model: _LseModel, theta) -> SaturatingPowerLaw:
    e, a, alpha = model.split(theta)
    return SaturatingPowerLaw(E=float(np.exp(e)), A=float(np.exp(a[0] + alpha[0] * model.centre[0])),
                              alpha=float(alpha[0]))


def _interior_starts(model: _LseModel, L: np.ndarray) -> list[np.ndarray]:
    """Starts with E at 25% and 75% of the lowest loss, A and alpha by a line in log(L - E)."""
    starts = []
    z = model.z[:, 0]
    for frac in (0.25, 0.75):
        E = frac * L.min()
        slope, intercept = np.polyfit(z, np.log(L - E), 1)
        alpha = max(-slope, 1e-3)
        starts.append(model.join(np.log(E), intercept, alpha))
    return starts


SATURATING_STARTS = 3     # best variable-projection starts refined, for the point fit and every refit


def fit_saturating(x, L, *, n_boot: int = 1000, seed: int = 0, weights=None,
                   delta: float | None = None) -> SaturatingFit:
    """Fit L = E + A x^-alpha on log L (least squares by default), with bootstrap intervals.

    Needs at least 4 distinct x values (3 parameters plus one degree of
    freedom) and L > 0 (the fit is on log L). Starts: the SATURATING_STARTS
    best points of a variable-projection grid over alpha, plus two interior
    starts (E at 25% and 75% of the lowest loss); every bootstrap refit is run
    from the same starts and the point estimate, keeping its best, so a draw
    is not stuck in the point fit's basin. Draws are conditioned on covering
    3 distinct x values; `n_boot_ok` says how many refits converged.
    `weights` lets the caller pass a precomputed resampling matrix (the
    fitter's caller resamples whole x values: seeds of one x together).

    Identification: a parameter at its bound (E at 0: the data show no
    floor; A or alpha at 0: the loss does not fall with x) or with a
    degenerate bootstrap distribution is marked in `identified` with the
    reason, and its interval is left NaN rather than printed as if it meant
    something.
    """
    x, L = np.asarray(x, float), np.asarray(L, float)
    if np.unique(x).size < 4:
        raise ValueError(f"saturating fit needs >= 4 distinct x values, got {np.unique(x).size}")
    if not (np.isfinite(L).all() and (L > 0).all()):
        raise ValueError("saturating fit needs finite losses > 0 (it is fitted on log L); "
                         "leave out points with loss <= 0 (perplexity <= 1)")
    # alpha > 0 (a sweep's loss falls with scale) through alpha = exp(t)
    model = _LseModel(np.log(x)[:, None], np.log(L), delta, positive_exponents=True)
    w1 = np.ones(x.size)
    starts = model.varpro_starts(_exponent_grid(1, 60), w1, SATURATING_STARTS) + _interior_starts(model, L)
    theta_hat, cost = _fit_lse(model, w1, [], 0, extra_starts=starts)
    # polish with the same iteration the bootstrap uses, so that where E is
    # barely identified (a flat valley) estimate and draws stop alike
    polished, polished_cost = model.batch_least_squares(theta_hat, np.ones((1, x.size)))
    if np.isfinite(polished_cost[0]) and polished_cost[0] <= cost:
        theta_hat = polished[0]
    law = _saturating_from_theta(model, theta_hat)
    draws = {k: np.full(0, np.nan) for k in law.params()}
    n_ok = 0
    if n_boot > 0 or weights is not None:
        if weights is None:
            weights = bootstrap_weights(n_boot, np.random.default_rng(seed), units=x, x=x, min_distinct=3)
        draws = {k: np.full(len(weights), np.nan) for k in law.params()}
        weights = np.asarray(weights, float)
        best_theta, best_cost = model.batch_least_squares(theta_hat, weights)
        for theta0 in starts:
            thetas, c = model.batch_least_squares(theta0, weights)
            take = np.isfinite(c) & ~(c >= best_cost)
            best_theta[take], best_cost[take] = thetas[take], c[take]
        for i, theta in enumerate(best_theta):
            if np.all(np.isfinite(theta)):
                n_ok += 1
                for k, v in _saturating_from_theta(model, theta).params().items():
                    draws[k][i] = v
    identified, notes = _saturating_identification(law, draws, x, L, model)
    intervals = {k: (percentile_interval(v, draws[k]) if not identified[k]
                     else Interval(v, float("nan"), float("nan"))) for k, v in law.params().items()}
    return SaturatingFit(law=law, intervals=intervals, draws=draws, n_points=int(x.size), n_boot_ok=n_ok,
                         identified=identified, notes=tuple(notes))


def _saturating_identification(law, draws, x, L, model):
    why = {k: "" for k in law.params()}
    notes = []
    floor_bound = np.exp(model.e_lower)
    reducible = law.A * np.min(x) ** (-law.alpha) if law.alpha > 0 else 0.0
    if law.E <= 1e3 * floor_bound or law.E < 1e-6 * L.min():
        why["E"] = "E at its lower bound 0: the data show no floor in the measured range"
        notes.append("E went to its lower bound 0: these data show no floor in the measured range "
                     "(a pure power law fits as well), so E is not identified")
    if law.alpha < 1e-4 or reducible < 1e-6 * L.min():
        why["A"] = why["alpha"] = "the fitted loss does not fall with x (A or alpha at 0)"
        notes.append("the loss does not fall with x in this range (A or alpha went to 0), "
                     "so A and alpha are not identified")
    for k, v in law.params().items():
        if not why[k]:
            why[k] = _degenerate(v, draws[k])
            if k == "E" and why[k]:
                notes.append(f"E is {NOT_IDENTIFIED} ({why[k]}): the data do not pin down a floor")
    return why, notes


# ---------------------------------------------------------------- the line with intervals
@dataclass(frozen=True, eq=False)
class LineFit:
    """The paper's log-log line for one family on one axis, with its sampling distribution.

    Seeds are clusters: rows at one x share whatever that x shares (its
    learning rate, its validation batch), so they are averaged first and the
    line is fitted to the per-x means; its uncertainty has n_x - 2 degrees
    of freedom (n_x distinct x values), not rows - 2.

    `cov` is the estimated covariance of (intercept, slope), `df` its degrees
    of freedom; `slope_draws`/`intercept_draws` are draws from the
    corresponding bivariate t (what figures' bands and extrapolations use).
    Comparisons between families draw jointly (compare.py), not from these.
    """

    line: LogLogLine
    intervals: dict[str, Interval]
    slope_draws: np.ndarray
    intercept_draws: np.ndarray
    n_points: int
    n_distinct_x: int
    resampling: str
    cov: np.ndarray = None       # 2x2, (intercept, slope); NaN when df < 1
    df: int = 0
    u_mean: float = float("nan")  # mean log10 x of the per-x means

    @property
    def se_slope(self) -> float:
        return float(np.sqrt(self.cov[1, 1])) if self.cov is not None else float("nan")


def per_x_means(x, y):
    """Distinct x, the mean of log10 y at each, and how many rows each mean holds."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xs, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    v = np.bincount(inv, weights=np.log10(y)) / counts
    return xs, v, counts


def t_interval(estimate: float, se: float, df: int, level: float = CI_LEVEL) -> Interval:
    from scipy.stats import t

    if df < 1 or not np.isfinite(se):
        return Interval(float(estimate), float("nan"), float("nan"))
    h = float(t.ppf(0.5 + level / 2, df)) * se
    return Interval(float(estimate), float(estimate) - h, float(estimate) + h)


def t_draws(mean: np.ndarray, cov: np.ndarray, df: float, n: int, rng: np.random.Generator,
            chi2: np.ndarray | None = None) -> np.ndarray:
    """n draws (n, k) from the multivariate t with location `mean`, scale `cov`, `df`.

    `chi2` (n,) lets several fits share one scale draw, which is how two
    families' lines are drawn jointly for a Welch-type comparison."""
    k = mean.size
    chol = np.linalg.cholesky(cov + 1e-300 * np.eye(k))
    z = rng.standard_normal((n, k)) @ chol.T
    if chi2 is None:
        chi2 = rng.chisquare(df, n)
    return mean[None, :] + z * np.sqrt(df / chi2)[:, None]


def fit_line(x, y, *, n_boot: int = 1000, rng: np.random.Generator) -> LineFit:
    """OLS log-log line on the per-x means, with exact t intervals (n_x - 2 df).

    The point estimate is the OLS line through the per-x means (with equal
    seeds per x, the OLS line through all rows). Its covariance is
    s^2 (U'U)^-1 from the residuals of the means: that variance includes any
    deviation the seeds of one x share, which a per-row analysis would take
    for independent evidence (the study's 95% intervals then covered 78%).
    Intervals are Student-t with n_x - 2 degrees of freedom, exact for normal
    deviations of the means; `n_boot` draws from the same bivariate t feed
    bands and extrapolations. Fewer than 3 distinct x: no interval (a line
    through 2 means has no residual to estimate its error from).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    xs, v, counts = per_x_means(x, y)
    u = np.log10(xs)
    slope, intercept = _weighted_ols(u, v, None)
    line = LogLogLine(slope=float(slope[0]), intercept=float(intercept[0]))
    n_x = int(xs.size)
    df = n_x - 2
    nan2 = np.full((2, 2), np.nan)
    slope_draws = intercept_draws = np.full(0, np.nan)
    cov = nan2
    resampling = f"per-x means of {x.size} rows; none (fewer than 3 distinct x values)"
    if df >= 1:
        resid = v - (line.intercept + line.slope * u)
        s2 = float(resid @ resid) / df
        U = np.stack([np.ones(n_x), u], axis=1)
        cov = s2 * np.linalg.inv(U.T @ U)
        resampling = f"per-x means of {x.size} rows, t with {df} df ({n_x} distinct x)"
        if n_boot > 0 and s2 > 0:
            d = t_draws(np.array([line.intercept, line.slope]), cov, df, n_boot, rng)
            intercept_draws, slope_draws = d[:, 0], d[:, 1]
    intervals = {"slope": t_interval(line.slope, float(np.sqrt(cov[1, 1])), df),
                 "intercept": t_interval(line.intercept, float(np.sqrt(cov[0, 0])), df)}
    return LineFit(line=line, intervals=intervals, slope_draws=slope_draws,
                   intercept_draws=intercept_draws, n_points=int(x.size),
                   n_distinct_x=n_x, resampling=resampling, cov=cov, df=df,
                   u_mean=float(u.mean()))


# ---------------------------------------------------------------- isoFLOP (approach 2)
def group_budgets(C, tol_dex: float = 0.05) -> np.ndarray:
    """Label points by compute budget: sorted log10 C split where gaps exceed tol_dex.

    Runs planned at one budget land on slightly different FLOPs (steps are
    rounded), so exact equality would split a budget into singletons.
    """
    logc = np.log10(np.asarray(C, float))
    order = np.argsort(logc)
    labels = np.empty(logc.size, dtype=int)
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(logc[order]) > tol_dex)])
    return labels


@dataclass(frozen=True, eq=False)
class IsoFlopFit:
    budgets: np.ndarray          # median C per usable budget
    N_opt: np.ndarray            # N* per budget
    D_opt: np.ndarray            # D* per budget
    loss_opt: np.ndarray         # parabola minimum per budget
    a: Interval                  # N* = k C^a
    k: Interval
    b: Interval                  # D* = k' C^b
    k_prime: Interval
    notes: tuple[str, ...]
    # what the figure draws: every point with the median C of its budget group (skipped
    # budgets included), and per usable budget the parabola (c2, c1, c0) in u = log10 N
    points: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = ()    # (C_budget, N, L, usable)
    parabolas: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


def _parabola_minima(u, d, L, weights):
    """Vertex of L = c2 u^2 + c1 u + c0 (u = log10 N) and log10 D there, per weight row."""
    X = np.stack([u * u, u, np.ones_like(u)], axis=1)                 # (n, 3)
    XtWX = np.einsum("bi,ij,ik->bjk", weights, X, X)
    XtWy = np.einsum("bi,ij,i->bj", weights, X, L)
    with np.errstate(all="ignore"):
        ok = np.linalg.matrix_rank(XtWX) == 3
        coef = np.full((weights.shape[0], 3), np.nan)
        if ok.any():
            coef[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][..., None])[..., 0]
        c2, c1, c0 = coef[:, 0], coef[:, 1], coef[:, 2]
        u_star = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
        loss_star = c0 - c1 * c1 / (4 * c2)
        slope, intercept = _weighted_ols(u, d, weights)
    return u_star, intercept + slope * u_star, loss_star


def fit_isoflop(C, N, D, L, *, n_boot: int = 1000, rng: np.random.Generator, units=None,
                tol_dex: float = 0.05) -> IsoFlopFit:
    """Chinchilla's approach 2: per budget a parabola of loss in log10 N, then N* = k C^a.

    Budgets with fewer than 3 distinct N, a concave parabola, or a minimum
    outside the sampled N range are skipped with a note (the optimum there
    is an extrapolation). D* is read off a line of log D on log N within the
    budget, which holds for any FLOPs-per-token rule (EBT's is not 6N).
    Bootstrap: points resampled within each budget, all budgets refitted.
    """
    C, N, D, L = (np.asarray(v, float) for v in (C, N, D, L))
    units = np.arange(C.size) if units is None else np.asarray(units)
    labels = group_budgets(C, tol_dex)
    notes, rows, coefs = [], [], []
    draws_u, draws_d = [], []
    c_budget, usable = np.empty(C.size), np.zeros(C.size, bool)
    for lab in np.unique(labels):
        m = labels == lab
        c_med = float(np.median(C[m]))
        c_budget[m] = c_med
        u, d = np.log10(N[m]), np.log10(D[m])
        if np.unique(u).size < 3:
            notes.append(f"budget {c_med:.3g} FLOPs: {np.unique(u).size} distinct N, a parabola needs 3")
            continue
        u_hat, d_hat, l_hat = (v[0] for v in _parabola_minima(u, d, L[m], np.ones((1, u.size))))
        if not np.isfinite(u_hat) or not (u.min() <= u_hat <= u.max()):
            notes.append(f"budget {c_med:.3g} FLOPs: loss has no minimum inside the sampled N "
                         f"range [{N[m].min():.3g}, {N[m].max():.3g}]; budget skipped")
            continue
        rows.append((c_med, u_hat, d_hat, l_hat))
        coefs.append(np.polyfit(u, L[m], 2))
        usable[m] = True
        w = bootstrap_weights(n_boot, rng, units=units[m], x=u, min_distinct=3, n_points=u.size) \
            if n_boot else np.ones((0, u.size))
        bu, bd, _ = _parabola_minima(u, d, L[m], w)
        draws_u.append(bu)
        draws_d.append(bd)
    nan = Interval(float("nan"), float("nan"), float("nan"))
    if len(rows) < 2:
        notes.append(f"isoFLOP: {len(rows)} usable budget(s); N* = k C^a needs 2 or more")
        arr = np.array(rows).reshape(-1, 4)
        return IsoFlopFit(arr[:, 0], 10 ** arr[:, 1], 10 ** arr[:, 2], arr[:, 3], nan, nan, nan, nan,
                          tuple(notes), (c_budget, N, L, usable), np.array(coefs).reshape(-1, 3))
    arr = np.array(rows)
    logc = np.log10(arr[:, 0])
    a_hat, lk_hat = _weighted_ols(logc, arr[:, 1], None)
    b_hat, lkp_hat = _weighted_ols(logc, arr[:, 2], None)
    intervals = [nan] * 4
    if n_boot:
        bu, bd = np.stack(draws_u, axis=1), np.stack(draws_d, axis=1)       # (B, budgets)
        a_d, lk_d = _ols_rows(logc, bu)
        b_d, lkp_d = _ols_rows(logc, bd)
        with np.errstate(over="ignore"):     # a wild bootstrap draw may overflow to inf: fine for percentiles
            intervals = [percentile_interval(a_hat[0], a_d), percentile_interval(10 ** lk_hat[0], 10 ** lk_d),
                         percentile_interval(b_hat[0], b_d), percentile_interval(10 ** lkp_hat[0], 10 ** lkp_d)]
    else:
        intervals = [Interval(float(v), np.nan, np.nan) for v in (a_hat[0], 10 ** lk_hat[0], b_hat[0], 10 ** lkp_hat[0])]
    if len(rows) == 2:
        notes.append("isoFLOP: only 2 budgets, so the exponents a and b pass exactly through them")
    return IsoFlopFit(budgets=arr[:, 0], N_opt=10 ** arr[:, 1], D_opt=10 ** arr[:, 2], loss_opt=arr[:, 3],
                      a=intervals[0], k=intervals[1], b=intervals[2], k_prime=intervals[3], notes=tuple(notes),
                      points=(c_budget, N, L, usable), parabolas=np.array(coefs))


def _ols_rows(u: np.ndarray, V: np.ndarray):
    """OLS of each row of V on u (same u for all rows); NaN rows stay NaN."""
    uc = u - u.mean()
    slope = (V - V.mean(axis=1, keepdims=True)) @ uc / (uc @ uc)
    return slope, V.mean(axis=1) - slope * u.mean()
