"""Monte-Carlo estimators that check the closed forms, random instances, and a rank statistic."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .gaussian import (DTYPE, _logdet, _mean, _tensor, check_covariance,
                       linear_gaussian_channel)


# -- Monte Carlo ----------------------------------------------------------------------------
class Estimate(NamedTuple):
    value: float
    stderr: float

    def agrees_with(self, exact: float, k: float = 4.0, atol: float = 1e-12) -> bool:
        """|value - exact| <= k standard errors (+ atol for exact-zero variance)."""
        return abs(self.value - float(exact)) <= k * self.stderr + atol


def _estimate(samples: torch.Tensor) -> Estimate:
    return Estimate(samples.mean().item(), (samples.std() / math.sqrt(len(samples))).item())


def _root(S: torch.Tensor) -> torch.Tensor:
    """R with R Rᵀ = S for a PSD S (symmetric square root; works for singular S)."""
    vals, vecs = torch.linalg.eigh(S)
    return vecs * vals.clamp_min(0).sqrt()


def sample_gaussian(mu, S, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of N(mu, S) (S PSD, may be singular). mu: (d,), S: (d, d) -> (n, d)."""
    S = check_covariance(S, "S", definite=False)
    mu = _mean(mu, "mu", S.shape[-1])
    return mu + torch.randn(n, S.shape[-1], generator=generator, dtype=DTYPE) @ _root(S).mT


def gaussian_log_density(x, mu, S) -> torch.Tensor:
    """log N(x; mu, S). x: (n, d) or (d,), mu broadcastable to x, S: (d, d) PD -> (n,)."""
    S = check_covariance(S, "S")
    d = S.shape[-1]
    x, mu = _mean(x, "x", d), _mean(mu, "mu", d)
    delta = torch.linalg.solve_triangular(torch.linalg.cholesky(S), (x - mu).unsqueeze(-1),
                                          upper=False)
    maha = (delta ** 2).sum((-2, -1))
    return -0.5 * (maha + d * math.log(2 * math.pi) + _logdet(S))


def mc_kl(mu0, S0, mu1, S1, n: int = 200_000, generator: torch.Generator | None = None) -> Estimate:
    """KL(P || Q) as the mean over x ~ P of log p(x) - log q(x)."""
    x = sample_gaussian(mu0, S0, n, generator)
    return _estimate(gaussian_log_density(x, mu0, S0) - gaussian_log_density(x, mu1, S1))


def mc_entropy(mu, S, n: int = 200_000, generator: torch.Generator | None = None) -> Estimate:
    """Entropy as the mean over x ~ N(mu, S) of -log density."""
    return _estimate(-gaussian_log_density(sample_gaussian(mu, S, n, generator), mu, S))


def mc_mutual_information_linear_gaussian(A, Sigma_x, Sigma_noise, n: int = 200_000,
                                          generator: torch.Generator | None = None) -> Estimate:
    """I(X; A X + N) as the mean over (x, y) of log p(y | x) - log p(y) (sampled, not a formula)."""
    A = _tensor(A, "A", 2)
    Sx = check_covariance(Sigma_x, "Sigma_x", definite=False)
    x = sample_gaussian(torch.zeros(Sx.shape[-1], dtype=DTYPE), Sx, n, generator)
    Sn = check_covariance(Sigma_noise, "Sigma_noise")
    noise = sample_gaussian(torch.zeros(Sn.shape[-1], dtype=DTYPE), Sn, n, generator)
    ax = x @ A.mT
    y = ax + noise
    _, Sy = linear_gaussian_channel(torch.zeros(Sx.shape[-1], dtype=DTYPE), Sx, A, Sn)
    return _estimate(gaussian_log_density(y, ax, Sn) - gaussian_log_density(y, 0 * ax, Sy))


def mc_mixture_entropy(weights, mus, Ss, n: int = 200_000,
                       generator: torch.Generator | None = None) -> Estimate:
    """Entropy of a Gaussian mixture sum_j w_j N(mus[j], Ss[j]) (mus: (J, d), Ss: (J, d, d))."""
    w = _tensor(weights, "weights", 1)
    if (w < 0).any() or abs(w.sum().item() - 1) > 1e-9:
        raise ValueError("weights: expected non-negative weights summing to 1")
    Ss = check_covariance(Ss, "Ss")
    mus = _mean(mus, "mus", Ss.shape[-1])
    comp = torch.multinomial(w, n, replacement=True, generator=generator)
    x = torch.cat([sample_gaussian(mus[j], Ss[j], int((comp == j).sum()), generator)
                   for j in range(len(w))])
    logp = torch.stack([gaussian_log_density(x, mus[j], Ss[j]) + w[j].log()
                        for j in range(len(w))]).logsumexp(0)
    return _estimate(-logp)


# -- random instances and a rank statistic ---------------------------------------------------
def random_spd(d: int, generator: torch.Generator | None = None, low: float = 0.1,
               high: float = 3.0) -> torch.Tensor:
    """A random (d, d) covariance with eigenvalues uniform in [low, high] and a random basis."""
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=DTYPE))
    vals = low + (high - low) * torch.rand(d, generator=generator, dtype=DTYPE)
    return (V * vals) @ V.mT


def random_instance(d: int, m: int, generator: torch.Generator | None = None) -> dict:
    """Two Gaussian embedding laws P, Q on R^d and a linear-Gaussian decoder R^d -> R^m:
    {'mu0', 'S0', 'mu1', 'S1', 'A' (m, d), 'Sigma_noise' (m, m)}; the arguments of
    :func:`data_processing_bound`."""
    return {"mu0": torch.randn(d, generator=generator, dtype=DTYPE), "S0": random_spd(d, generator),
            "mu1": torch.randn(d, generator=generator, dtype=DTYPE), "S1": random_spd(d, generator),
            "A": torch.randn(m, d, generator=generator, dtype=DTYPE),
            "Sigma_noise": random_spd(m, generator, 0.05, 1.0)}


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation of two 1-D samples of the same length (no tie correction)."""
    x, y = _tensor(x, "x", 1).flatten(), _tensor(y, "y", 1).flatten()
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"y: expected as many values as x (at least 3), got {len(y)} and {len(x)}")
    rx, ry = (v.argsort().argsort().to(DTYPE) for v in (x, y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return ((rx * ry).sum() / (rx.norm() * ry.norm())).item()
