"""Scaling laws as small frozen dataclasses with named parameters.

Every law here is a value: its fields are the parameters a paper would print
(slope, E, A, alpha, ...), and `predict` evaluates it. Fitting lives in
`fitting.py`; keeping the forms apart from the optimiser means a report, a test
or a user can build a law by hand (`SaturatingPowerLaw(E=1.8, A=400, alpha=0.34)`)
and get the same predictions the fitter would.

`params()` returns the parameters as an ordered dict so tables and bootstrap
summaries can iterate over names instead of positions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


def _params(law) -> dict[str, float]:
    return {f.name: float(getattr(law, f.name)) for f in dataclasses.fields(law)}


@dataclass(frozen=True)
class LogLogLine:
    """The paper's line: log10(y) = intercept + slope * log10(x).

    EBT paper section "scaling rate": each curve is an ordinary least-squares
    fit of log10(validation perplexity) on log10(x); the slope is the scaling
    rate that two families are compared by.
    """

    slope: float
    intercept: float

    name = "loglog"

    def predict(self, x):
        """y at x (same units as the fitted metric, e.g. perplexity)."""
        return 10.0 ** (self.intercept + self.slope * np.log10(np.asarray(x, dtype=float)))

    def params(self) -> dict[str, float]:
        return _params(self)


@dataclass(frozen=True)
class SaturatingPowerLaw:
    """L(x) = E + A * x**(-alpha): a power law that levels off at E.

    A straight line in log-log space fitted to such a curve under-states the
    exponent as L nears E; fitting E explicitly is the usual remedy. L is a
    loss (nats per token), E the irreducible loss.
    """

    E: float
    A: float
    alpha: float

    name = "saturating"

    def predict(self, x):
        x = np.asarray(x, dtype=float)
        return self.E + self.A * x ** (-self.alpha)

    def params(self) -> dict[str, float]:
        return _params(self)


@dataclass(frozen=True)
class KaplanComputeLaw:
    """Kaplan et al. (2020): L(C) = E + (C_c / C)**alpha_C.

    With E = 0 this is Kaplan's pure form; with E free it is the saturating
    law rewritten with a critical compute C_c = A**(1/alpha_C), which reads
    more naturally on a FLOPs axis ("the compute at which the reducible loss is 1").
    """

    C_c: float
    alpha_C: float
    E: float = 0.0

    name = "kaplan"

    def predict(self, C):
        C = np.asarray(C, dtype=float)
        return self.E + (self.C_c / C) ** self.alpha_C

    def params(self) -> dict[str, float]:
        return _params(self)

    @classmethod
    def from_saturating(cls, law: SaturatingPowerLaw) -> "KaplanComputeLaw":
        """Rewrite E + A C^-alpha as E + (C_c/C)^alpha with C_c = A^(1/alpha)."""
        if law.alpha <= 0 or law.A <= 0:
            return cls(C_c=float("nan"), alpha_C=law.alpha, E=law.E)
        return cls(C_c=float(np.exp(np.log(law.A) / law.alpha)), alpha_C=law.alpha, E=law.E)


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al. (2022): L(N, D) = E + A / N**alpha + B / D**beta.

    N is the parameter count, D the training tokens. Fitted as Epoch AI did
    (Huber loss on log L), see `fitting.fit_chinchilla`.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    name = "chinchilla"

    def predict(self, N, D):
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        return self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)

    def params(self) -> dict[str, float]:
        return _params(self)

    def compute_optimal(self, C, flops_per_param_token: float = 6.0):
        """N*(C), D*(C) minimising L subject to C = k N D (k = 6 for a Transformer).

        Closed form from setting dL/dN = 0 along the constraint:
        N* = G (C/k)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
        """
        C = np.asarray(C, dtype=float)
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        n_opt = G * (C / flops_per_param_token) ** (self.beta / s)
        d_opt = (C / flops_per_param_token) / n_opt
        return n_opt, d_opt
