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

Files: ``gaussian`` (closed forms and argument checks), ``monte_carlo`` (estimators, random
instances), ``linear_toy`` (the exact linear-Gaussian model), ``measured`` (per-image quantities
of a trained model). Everything is importable from ``i2i_unlearn.theory``.
"""
from .gaussian import (DTYPE, check_covariance, data_processing_bound, entropy_same_covariance,
                       gaussian_entropy, kl_gaussians, kl_isotropic, kl_shared_covariance,
                       linear_gaussian_channel, mutual_information_linear_gaussian)
from .linear_toy import OBJECTIVES, LinearToy, make_linear_toy, run_linear_unlearning
from .measured import embedding_audit
from .monte_carlo import (Estimate, gaussian_log_density, mc_entropy, mc_kl,
                          mc_mixture_entropy, mc_mutual_information_linear_gaussian, random_instance,
                          random_spd, rank_correlation, sample_gaussian)

__all__ = [
    "DTYPE", "check_covariance", "gaussian_entropy", "kl_gaussians", "kl_shared_covariance",
    "kl_isotropic", "linear_gaussian_channel", "data_processing_bound",
    "mutual_information_linear_gaussian", "entropy_same_covariance",
    "Estimate", "sample_gaussian", "gaussian_log_density", "mc_kl", "mc_entropy",
    "mc_mutual_information_linear_gaussian", "mc_mixture_entropy", "random_spd", "random_instance",
    "rank_correlation", "embedding_audit", "LinearToy", "make_linear_toy", "OBJECTIVES",
    "run_linear_unlearning",
]
