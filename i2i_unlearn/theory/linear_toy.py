"""An exact linear-Gaussian encoder/decoder on which the paper's objective can be optimised and
its mutual informations computed in closed form."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .gaussian import DTYPE, _kl, _logdet
from .monte_carlo import _root, sample_gaussian


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
