"""Gaussian closed forms (nats, torch float64) and the argument checks every theory function uses.

Shapes: ``mu`` is ``(..., d)``, a covariance ``S`` is ``(..., d, d)``; leading batch dimensions
broadcast. Bad input raises ``ValueError`` naming the argument.
"""
from __future__ import annotations

import math

import torch

DTYPE = torch.float64


# -- checks ---------------------------------------------------------------------------------
def _tensor(x, name: str, min_ndim: int = 0) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=DTYPE)
    if t.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimension(s), got shape "
                         f"{tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t


def check_covariance(S, name: str = "S", definite: bool = True, tol: float = 1e-10) -> torch.Tensor:
    """``S``: (..., d, d) symmetric and positive (semi-)definite -> float64 tensor, or ValueError."""
    S = _tensor(S, name, 2)
    if S.shape[-1] != S.shape[-2]:
        raise ValueError(f"{name}: expected a square (..., d, d) covariance, got {tuple(S.shape)}")
    scale = S.abs().amax().clamp_min(1.0)
    if (S - S.mT).abs().amax() > 1e-8 * scale:
        raise ValueError(f"{name}: covariance is not symmetric")
    low = torch.linalg.eigvalsh(S).amin().item()
    bad = low <= tol * scale.item() if definite else low < -1e-8 * scale.item()
    if bad:
        kind = "positive-definite" if definite else "positive semi-definite"
        raise ValueError(f"{name}: expected a {kind} covariance, smallest eigenvalue {low:.3g}")
    return S


def _mean(mu, name: str, d: int) -> torch.Tensor:
    mu = _tensor(mu, name, 1)
    if mu.shape[-1] != d:
        raise ValueError(f"{name}: expected shape (..., {d}) to match its covariance, "
                         f"got {tuple(mu.shape)}")
    return mu


def _logdet(S: torch.Tensor) -> torch.Tensor:
    return 2 * torch.log(torch.diagonal(torch.linalg.cholesky(S), dim1=-2, dim2=-1)).sum(-1)


# -- closed forms ---------------------------------------------------------------------------
def gaussian_entropy(S) -> torch.Tensor:
    """Differential entropy of N(μ, S): ½ log det(2πe S). S: (..., d, d) -> (...)."""
    S = check_covariance(S, "S")
    return 0.5 * (S.shape[-1] * math.log(2 * math.pi * math.e) + _logdet(S))


def kl_gaussians(mu0, S0, mu1, S1) -> torch.Tensor:
    """KL(N(mu0, S0) || N(mu1, S1)) in nats.

    mu0, mu1: (..., d); S0, S1: (..., d, d) positive definite -> (...).
    ½ [tr(S1⁻¹ S0) + (mu1 - mu0)ᵀ S1⁻¹ (mu1 - mu0) - d + log det S1 - log det S0].
    """
    S0, S1 = check_covariance(S0, "S0"), check_covariance(S1, "S1")
    if S0.shape[-1] != S1.shape[-1]:
        raise ValueError(f"S1: dimension {S1.shape[-1]} does not match S0's {S0.shape[-1]}")
    d = S0.shape[-1]
    return _kl(_mean(mu0, "mu0", d), S0, _mean(mu1, "mu1", d), S1)


def _kl(mu0, S0, mu1, S1) -> torch.Tensor:  # unchecked core of kl_gaussians; batch dims broadcast
    L1 = torch.linalg.cholesky(S1)
    delta = (mu1 - mu0).unsqueeze(-1)
    trace = torch.cholesky_solve(S0, L1).diagonal(dim1=-2, dim2=-1).sum(-1)
    maha = (delta * torch.cholesky_solve(delta, L1)).sum((-2, -1))
    return 0.5 * (trace + maha - S0.shape[-1] + _logdet(S1) - _logdet(S0))


def kl_shared_covariance(mu0, mu1, S) -> torch.Tensor:
    """KL(N(mu0, S) || N(mu1, S)) = ½ (mu0 - mu1)ᵀ S⁻¹ (mu0 - mu1). mu: (..., d), S: (..., d, d)."""
    S = check_covariance(S, "S")
    d = S.shape[-1]
    delta = (_mean(mu0, "mu0", d) - _mean(mu1, "mu1", d)).unsqueeze(-1)
    return 0.5 * (delta * torch.cholesky_solve(delta, torch.linalg.cholesky(S))).sum((-2, -1))


def kl_isotropic(mu0, mu1, sigma) -> torch.Tensor:
    """KL(N(mu0, σ²I) || N(mu1, σ²I)) = ||mu0 - mu1||² / (2σ²): the paper's L2 loss, scaled.

    mu0, mu1: (..., d); sigma > 0 (a float) -> (...).
    """
    if not float(sigma) > 0:
        raise ValueError(f"sigma: expected a positive standard deviation, got {sigma}")
    mu0 = _tensor(mu0, "mu0", 1)
    mu1 = _mean(mu1, "mu1", mu0.shape[-1])
    return ((mu0 - mu1) ** 2).sum(-1) / (2 * float(sigma) ** 2)


def linear_gaussian_channel(mu, S, A, Sigma_noise, b=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Law of Y = A Z + b + N for Z ~ N(mu, S), N ~ N(0, Sigma_noise) independent of Z.

    mu: (..., d), S: (..., d, d) PSD, A: (m, d), Sigma_noise: (m, m) PSD, b: (m,)
    -> (A mu + b (..., m), A S Aᵀ + Sigma_noise (..., m, m)).
    """
    A = _tensor(A, "A", 2)
    S = check_covariance(S, "S", definite=False)
    if A.shape[-1] != S.shape[-1]:
        raise ValueError(f"A: expected (m, {S.shape[-1]}) to act on the input, got {tuple(A.shape)}")
    Sn = check_covariance(Sigma_noise, "Sigma_noise", definite=False)
    if Sn.shape[-1] != A.shape[-2]:
        raise ValueError(f"Sigma_noise: expected ({A.shape[-2]}, {A.shape[-2]}), got {tuple(Sn.shape)}")
    mu = _mean(mu, "mu", A.shape[-1])
    out = (A @ mu.unsqueeze(-1)).squeeze(-1)
    if b is not None:
        out = out + _mean(b, "b", A.shape[-2])
    return out, A @ S @ A.mT + Sn


def data_processing_bound(mu0, S0, mu1, S1, A, Sigma_noise, b=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL(D#P || D#Q), KL(P || Q)) for P = N(mu0, S0), Q = N(mu1, S1) and the fixed decoder
    D(z) = A z + b + N(0, Sigma_noise). The data-processing inequality says first <= second.

    Shapes as in :func:`linear_gaussian_channel`; the output covariances must be positive
    definite (a noisy decoder, or A of full row rank).
    """
    kl_in = kl_gaussians(mu0, S0, mu1, S1)
    m0, C0 = linear_gaussian_channel(mu0, S0, A, Sigma_noise, b)
    m1, C1 = linear_gaussian_channel(mu1, S1, A, Sigma_noise, b)
    return kl_gaussians(m0, C0, m1, C1), kl_in


def mutual_information_linear_gaussian(A, Sigma_x, Sigma_noise) -> torch.Tensor:
    """I(X; Y) for Y = A X + N, X ~ N(·, Sigma_x), N ~ N(0, Sigma_noise) independent.

    A: (m, d), Sigma_x: (d, d) PSD (may be singular), Sigma_noise: (m, m) PD -> ().
    I = ½ log det(A Sigma_x Aᵀ + Sigma_noise) - ½ log det Sigma_noise.
    """
    Sn = check_covariance(Sigma_noise, "Sigma_noise")
    Sx = check_covariance(Sigma_x, "Sigma_x", definite=False)
    _, Sy = linear_gaussian_channel(torch.zeros(Sx.shape[-1], dtype=DTYPE), Sx, A, Sn)
    return 0.5 * (_logdet(Sy) - _logdet(Sn))


def entropy_same_covariance(S) -> dict[str, float]:
    """Entropy (nats) of three laws with covariance S (d, d): the Gaussian, and a whitened
    product of uniform or of Laplace coordinates mapped by S^½ (closed forms)."""
    S = check_covariance(S, "S")
    d, half_logdet = S.shape[-1], 0.5 * _logdet(S).item()
    return {"gaussian": gaussian_entropy(S).item(),
            "uniform": d * math.log(2 * math.sqrt(3)) + half_logdet,  # U[-√3, √3]: variance 1
            "laplace": d * (1 + math.log(2 / math.sqrt(2))) + half_logdet}  # scale 1/√2: var 1
