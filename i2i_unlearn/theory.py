"""Closed forms behind the theory chapter, Monte-Carlo estimators that check them, and an exact
linear-Gaussian encoder/decoder on which the paper's objective can be optimised and audited.

Everything is Gaussian, so every divergence and mutual information has a closed form (nats,
torch float64). Shapes: ``mu`` is ``(..., d)``, a covariance ``S`` is ``(..., d, d)``; leading
batch dimensions broadcast. Bad input raises ``ValueError`` naming the argument.

Which statement of the paper each function stands for (our own derivations; the paper's exact
theorem wording was not available to us):

- the unlearning goal, mutual information I(X_f; X̂_f) -> 0 while I(X_r; X̂_r) is kept:
  :func:`mutual_information_linear_gaussian`;
- Theorem 1 (a fixed decoder: divergence of outputs bounded by divergence of encoder outputs):
  the data-processing inequality, :func:`data_processing_bound` for a linear-Gaussian decoder;
- the reduction to an L2 loss for Gaussian embeddings: :func:`kl_shared_covariance` and
  :func:`kl_isotropic` (KL = ||μ0 - μ1||² / (2σ²) when both covariances are σ²I);
- a Gaussian is the maximum-entropy law for a given covariance: :func:`gaussian_entropy`,
  :func:`entropy_same_covariance`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

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


@torch.no_grad()
def embedding_audit(original, unlearned, images: torch.Tensor, mask_name: str = "centre-8/16",
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """What can be measured honestly on a trained I2I model, per image (no distribution needed).

    images: (N, C, H, W) in [-1, 1]. Returns (N,) tensors:
    'emb_change'   -- mean over elements of (E(T x) - E0(T x))², the paper's L2 on this image;
    'out_change'   -- hidden-region MSE between the unlearned and the original model's outputs;
    'to_noise_before', 'to_noise_after' -- mean over elements of (E0(T x) - m)² and
    (E(T x) - m)², m the mean of E0(T n) over noise images n ~ N(0, I) (the forget target);
    and 'noise_spread' -- (E0(T n) - m)² for N noise images, the target's own spread.
    T is the deterministic corruption of ``mask_name`` (no random token masking).
    """
    from . import masks
    from .metrics import hidden_mse
    from .unlearn import make_noise

    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1]).to(images.dtype)
    noise = make_noise(images, "standard", torch.Generator().manual_seed(seed))
    e0, e1, en = (m.encode(x, mask) for m, x in ((original, images), (unlearned, images),
                                                    (original, noise)))
    target = en.mean(0, keepdim=True)

    def per_image(a, b):
        return ((a - b) ** 2).flatten(1).mean(1).double()

    out = hidden_mse(unlearned.generate(images, mask), original.generate(images, mask), mask)
    return {"emb_change": per_image(e1, e0), "out_change": out.double(),
            "to_noise_before": per_image(e0, target), "to_noise_after": per_image(e1, target),
            "noise_spread": per_image(en, target)}


# -- an exact linear-Gaussian I2I model ------------------------------------------------------
def _eye(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=DTYPE)


@dataclass
class LinearToy:
    """Encoder E(x) = W x + ε (ε ~ N(0, σ_e² I_k): the corruption's randomness, drawn once for
    student and teacher alike, so it cancels in the loss) and a fixed decoder D(z) = D z + η
    (η ~ N(0, σ_d² I_d)).

    Forget inputs X_f = U_f s, s ~ N(0, C_f); retain inputs X_r = U_r s, s ~ N(0, C_r); U_f
    (d, r_f) and U_r (d, r_r) have orthonormal columns spanning orthogonal subspaces of R^d.
    W0 (k, d) is the original encoder; D = W0⁺ (d, k) reconstructs both subspaces exactly, up to
    the two noises.
    """
    U_f: torch.Tensor
    U_r: torch.Tensor
    C_f: torch.Tensor
    C_r: torch.Tensor
    W0: torch.Tensor
    D: torch.Tensor
    sigma_e: float
    sigma_d: float

    @property
    def k(self) -> int:
        return self.W0.shape[0]

    @property
    def d(self) -> int:
        return self.W0.shape[1]

    def input_cov(self, which: str) -> torch.Tensor:
        """Covariance (d, d) of X_f ('forget'), X_r ('retain') or their 1:1 mixture ('data')."""
        if which == "data":
            return 0.5 * (self.input_cov("forget") + self.input_cov("retain"))
        if which not in ("forget", "retain"):
            raise ValueError(f"which: expected 'forget', 'retain' or 'data', got {which!r}")
        U, C = (self.U_f, self.C_f) if which == "forget" else (self.U_r, self.C_r)
        return U @ C @ U.mT

    def sample(self, which: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n inputs (n, d) of the 'forget' or 'retain' set."""
        U, C = (self.U_f, self.C_f) if which == "forget" else (self.U_r, self.C_r)
        return sample_gaussian(torch.zeros(C.shape[0], dtype=DTYPE), C, n, generator) @ U.mT

    def channel_noise(self) -> torch.Tensor:
        """(d, d) covariance of D ε + η: what the channel X -> X̂ adds to D W X."""
        return self.sigma_e ** 2 * self.D @ self.D.mT + self.sigma_d ** 2 * _eye(self.d)

    def mutual_information(self, W: torch.Tensor, which: str) -> torch.Tensor:
        """I(X; X̂) for X̂ = D(E(X)), X the 'forget' or 'retain' inputs (a linear-Gaussian channel)."""
        N, A = self.channel_noise(), self.D @ W
        return 0.5 * (_logdet(A @ self.input_cov(which) @ A.mT + N) - _logdet(N))

    def embedding_law(self, W: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (k,), covariance (k, k)) of W x + ε for x ~ N(0, cov)."""
        return torch.zeros(self.k, dtype=DTYPE), W @ cov @ W.mT + self.sigma_e ** 2 * _eye(self.k)

    def output_law(self, law) -> tuple[torch.Tensor, torch.Tensor]:
        """Law of D z + η for z ~ law: the fixed decoder applied to an embedding law."""
        mu, S = law
        return self.D @ mu, self.D @ S @ self.D.mT + self.sigma_d ** 2 * _eye(self.d)

    def forget_divergences(self, W: torch.Tensor) -> dict[str, float]:
        """What the divergence-maximising baselines push up, exactly: the forget reconstruction
        error E||D W x_f - x_f||²/d ('recon') and KL(law of E(X_f) || law of E0(X_f)) ('kl')."""
        Sf, R = self.input_cov("forget"), self.D @ W - _eye(self.d)
        return {"recon": torch.trace(R @ Sf @ R.mT).item() / self.d,
                "kl": _kl(*self.embedding_law(W, Sf), *self.embedding_law(self.W0, Sf)).item()}

    def pair_output_metric(self) -> torch.Tensor:
        """M (k, k) with KL(D#N(z0, σ_e²I) || D#N(z1, σ_e²I)) = ½ (z0 - z1)ᵀ M (z0 - z1)."""
        return self.D.mT @ torch.linalg.solve(self.channel_noise(), self.D)

    def forget_optimum_kl(self, noise_scale: float = 1.0) -> tuple[float, float]:
        """(output KL, embedding KL) between the forget law and the noise target's law at the
        minimiser W U_f = 0 of the noise objective."""
        P = self.embedding_law(self.W0, 0 * self.input_cov("forget"))
        Q = self.embedding_law(self.W0, noise_scale * self.input_cov("data"))
        return (_kl(*self.output_law(P), *self.output_law(Q)).item(), _kl(*P, *Q).item())


def make_linear_toy(d: int = 8, k: int = 6, r_forget: int = 2, r_retain: int = 4,
                    sigma_e: float = 0.3, sigma_d: float = 0.3, seed: int = 0) -> LinearToy:
    """A random LinearToy (needs 1 <= r_forget, 1 <= r_retain, r_forget + r_retain <= k <= d)."""
    if not (1 <= r_forget and 1 <= r_retain and r_forget + r_retain <= k <= d):
        raise ValueError(f"k: expected r_forget + r_retain <= k <= d, got r_forget={r_forget}, "
                         f"r_retain={r_retain}, k={k}, d={d}")
    for name, v in (("sigma_e", sigma_e), ("sigma_d", sigma_d)):
        if not v > 0:
            raise ValueError(f"{name}: expected a positive noise level, got {v}")
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DTYPE))
    U_f, U_r = Q[:, :r_forget], Q[:, r_forget:r_forget + r_retain]

    def spd(r):  # eigenvalues in [0.5, 2]
        V, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=DTYPE))
        return V @ torch.diag(0.5 + 1.5 * torch.rand(r, generator=g, dtype=DTYPE)) @ V.mT

    C_f, C_r = spd(r_forget), spd(r_retain)
    # W0 acts on the data subspaces only, so D = W0⁺ reconstructs them exactly
    W0 = torch.randn(k, r_forget + r_retain, generator=g, dtype=DTYPE) @ Q[:, :r_forget + r_retain].mT
    W0 = W0 / W0.norm() * math.sqrt(k)
    return LinearToy(U_f, U_r, C_f, C_r, W0, torch.linalg.pinv(W0), float(sigma_e), float(sigma_d))


OBJECTIVES = ("noise", "max-loss", "max-kl")


def run_linear_unlearning(toy: LinearToy, objective: str = "noise", alpha: float = 0.25,
                          noise_scale: float = 1.0, steps: int = 300, lr: float = 0.01,
                          batch_size: int = 32, seed: int = 0) -> list[dict]:
    """Train the encoder W from W0 with Adam (the decoder stays fixed); log exact quantities.

    objective: 'noise' (the paper's) -- mean ||(W - W0) x_r||²/k + α mean ||W x_f - W0 n||²/k with
    n ~ N(0, noise_scale · Σ_data); 'max-loss' -- reconstruction error on retain minus α times
    that on forget; 'max-kl' -- the retain term minus α KL(law of E(X_f) || law of E0(X_f)).
    Returns one dict per step, measured before that step's update (step 0 = the original).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    if not alpha >= 0:
        raise ValueError(f"alpha: expected a non-negative forget weight, got {alpha}")
    if not noise_scale > 0:
        raise ValueError(f"noise_scale: expected a positive scale of Σ, got {noise_scale}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps, batch_size: expected positive integers, got {steps}, {batch_size}")
    g = torch.Generator().manual_seed(seed)
    W0, k, d, s2 = toy.W0, toy.k, toy.d, toy.sigma_e ** 2
    Sf, Sr, Sn = toy.input_cov("forget"), toy.input_cov("retain"), noise_scale * toy.input_cov("data")
    target_f = toy.embedding_law(W0, Sn)  # law of E0(n): what forget embeddings are pulled to
    original_f, original_r = toy.embedding_law(W0, Sf), toy.embedding_law(W0, Sr)
    out_target_f, out_original_r = toy.output_law(target_f), toy.output_law(original_r)
    M = toy.pair_output_metric()
    target_var = torch.trace(W0 @ Sn @ W0.mT).item()
    I = _eye(d)
    root_f, root_r, root_n = _root(toy.C_f), _root(toy.C_r), _root(Sn)

    def draw(root, U=None):
        z = torch.randn(batch_size, root.shape[0], generator=g, dtype=DTYPE) @ root.mT
        return z if U is None else z @ U.mT

    W = W0.clone().requires_grad_(True)
    opt = torch.optim.Adam([W], lr=lr)
    log = []
    for step in range(steps + 1):
        x_f, x_r, n = draw(root_f, toy.U_f), draw(root_r, toy.U_r), draw(root_n)
        if objective == "max-loss":
            retain = ((x_r @ (toy.D @ W - I).mT) ** 2).sum(1).mean() / d
            forget = ((x_f @ (toy.D @ W - I).mT) ** 2).sum(1).mean() / d
        else:
            retain = ((x_r @ (W - W0).mT) ** 2).sum(1).mean() / k
            forget = (((x_f @ W.mT - n @ W0.mT) ** 2).sum(1).mean() / k if objective == "noise"
                      else _kl(*toy.embedding_law(W, Sf), *original_f))
        loss = retain + alpha * forget if objective == "noise" else retain - alpha * forget
        with torch.no_grad():
            Wd = W.detach()
            P_f, P_r = toy.embedding_law(Wd, Sf), toy.embedding_law(Wd, Sr)
            delta = x_f @ Wd.mT - n @ W0.mT  # per pair E(x_f) - E0(n), (batch, k)
            eye_k = s2 * _eye(k)
            exact_f = (torch.trace(Wd @ Sf @ Wd.mT).item() + target_var) / k
            exact_r = torch.trace((Wd - W0) @ Sr @ (Wd - W0).mT).item() / k
            cov_delta = Wd @ Sf @ Wd.mT + W0 @ Sn @ W0.mT  # covariance of E(x_f) - E0(n)
            log.append({
                "step": step, "loss": loss.item(), "retain_term": retain.item(),
                "forget_term": forget.item(), "objective": exact_r + alpha * exact_f,
                "objective_floor": alpha * target_var / k,
                "mi_forget": toy.mutual_information(Wd, "forget").item(),
                "mi_retain": toy.mutual_information(Wd, "retain").item(),
                # marginal laws: student on forget vs teacher on noise; student vs teacher on retain
                "kl_emb_forget": _kl(*P_f, *target_f).item(),
                "kl_out_forget": _kl(*toy.output_law(P_f), *out_target_f).item(),
                "kl_emb_retain": _kl(*P_r, *original_r).item(),
                "kl_out_retain": _kl(*toy.output_law(P_r), *out_original_r).item(),
                # per pair (x_f, n): KL(N(W x_f, σ_e²I) || N(W0 n, σ_e²I)) by the general formula,
                # the scaled L2 ||W x_f - W0 n||²/(2σ_e²), and the KL of the decoded pair laws
                "pair_kl_batch": _kl(x_f @ Wd.mT, eye_k, n @ W0.mT, eye_k).mean().item(),
                "pair_l2_batch": ((delta ** 2).sum(1) / (2 * s2)).mean().item(),
                "pair_out_kl_batch": (0.5 * ((delta @ M) * delta).sum(1)).mean().item(),
                # their expectations over independent (x_f, n), exactly
                "surrogate_forget": exact_f * k / (2 * s2),
                "pair_out_kl_forget": 0.5 * torch.trace(M @ cov_delta).item(),
                "surrogate_retain": exact_r * k / (2 * s2),
                **{f"{key}_forget_divergence": v for key, v in toy.forget_divergences(Wd).items()},
            })
        if step == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return log
