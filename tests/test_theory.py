"""Tests of i2i_unlearn.theory: closed forms against Monte Carlo, the data-processing bound on
random instances, the shared-covariance KL as a scaled L2, error messages, and the numbered
claims of the theory chapter (notebooks/01_theory.ipynb) on the exact linear-Gaussian model.

Monte-Carlo tolerance: an estimate agrees with a closed form when they differ by at most
4 standard errors (fixed seeds, 200,000 draws; a false alarm has probability < 1e-4 per check).
"""
import math

import pytest
import torch
from conftest import small_mae

from i2i_unlearn import theory
from i2i_unlearn.theory import monte_carlo

N_MC = 200_000
DT = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- closed forms vs Monte Carlo (Claim 1) -----------------------------------------------------
@pytest.mark.parametrize("seed,d", [(0, 2), (1, 5)])
def test_kl_matches_monte_carlo(seed, d):
    inst = theory.random_instance(d, 2, gen(seed))
    args = [inst[k] for k in ("mu0", "S0", "mu1", "S1")]
    exact = theory.kl_gaussians(*args).item()
    est = theory.mc_kl(*args, N_MC, gen(100 + seed))
    assert est.agrees_with(exact), (exact, est)
    assert theory.kl_gaussians(inst["mu0"], inst["S0"], inst["mu0"], inst["S0"]).abs() < 1e-10


@pytest.mark.parametrize("seed,d", [(2, 1), (3, 6)])
def test_entropy_matches_monte_carlo(seed, d):
    S = theory.random_spd(d, gen(seed))
    exact = theory.gaussian_entropy(S).item()
    assert theory.mc_entropy(torch.zeros(d, dtype=DT), S, N_MC, gen(seed)).agrees_with(exact)
    if d == 1:  # the textbook scalar formula
        assert exact == pytest.approx(0.5 * math.log(2 * math.pi * math.e * S.item()), rel=1e-12)


@pytest.mark.parametrize("singular", [False, True])
def test_mutual_information_matches_monte_carlo(singular):
    g = gen(4)
    A = torch.randn(3, 4, generator=g, dtype=DT)
    Sx = theory.random_spd(4, g)
    if singular:  # inputs on a 2-dimensional subspace, as the forget set of the exact model
        U, _ = torch.linalg.qr(torch.randn(4, 2, generator=g, dtype=DT))
        Sx = U @ theory.random_spd(2, g) @ U.T
    Sn = theory.random_spd(3, g, 0.1, 1.0)
    exact = theory.mutual_information_linear_gaussian(A, Sx, Sn).item()
    assert exact > 0
    assert theory.mc_mutual_information_linear_gaussian(A, Sx, Sn, N_MC, gen(5)).agrees_with(exact)
    # I(X; AX + N) = h(Y) - h(N)
    h = theory.gaussian_entropy(A @ Sx @ A.T + Sn) - theory.gaussian_entropy(Sn)
    assert exact == pytest.approx(h.item(), rel=1e-10)
    assert theory.mutual_information_linear_gaussian(0 * A, Sx, Sn).abs() < 1e-12


# -- data processing (Claim 4) -----------------------------------------------------------------
def test_data_processing_bound_holds_on_200_random_instances():
    worst = 0.0
    for seed in range(200):
        g = gen(seed)
        d = 1 + seed % 6
        m = 1 + (seed // 6) % 6
        kl_out, kl_in = theory.data_processing_bound(**theory.random_instance(d, m, g))
        assert kl_out <= kl_in + 1e-10, (seed, kl_out, kl_in)
        worst = max(worst, (kl_out / kl_in).item())
    assert worst <= 1


def test_an_invertible_noiseless_decoder_keeps_the_kl():
    inst = theory.random_instance(4, 4, gen(7))
    inst["Sigma_noise"] = torch.zeros(4, 4, dtype=DT)  # D(z) = A z: a bijection
    kl_out, kl_in = theory.data_processing_bound(**inst)
    assert kl_out.item() == pytest.approx(kl_in.item(), rel=1e-8)


# -- shared covariance: KL = scaled L2 (Claim 5) -------------------------------------------------
def test_shared_covariance_kl_is_the_scaled_l2():
    g = gen(8)
    mu0, mu1 = torch.randn(10, 5, generator=g, dtype=DT), torch.randn(10, 5, generator=g, dtype=DT)
    sigma = 0.7
    iso = sigma ** 2 * torch.eye(5, dtype=DT)
    l2 = ((mu0 - mu1) ** 2).sum(-1) / (2 * sigma ** 2)
    torch.testing.assert_close(theory.kl_gaussians(mu0, iso, mu1, iso), l2, rtol=1e-10, atol=0)
    torch.testing.assert_close(theory.kl_isotropic(mu0, mu1, sigma), l2, rtol=1e-12, atol=0)
    torch.testing.assert_close(theory.kl_shared_covariance(mu0, mu1, iso), l2, rtol=1e-10, atol=0)
    S = theory.random_spd(5, g)
    delta = mu0[0] - mu1[0]
    exact = theory.kl_shared_covariance(mu0[0], mu1[0], S)
    assert exact.item() == pytest.approx(0.5 * (delta @ torch.linalg.solve(S, delta)).item(), rel=1e-10)
    assert exact.item() == pytest.approx(theory.kl_gaussians(mu0[0], S, mu1[0], S).item(), rel=1e-10)
    assert theory.mc_kl(mu0[0], S, mu1[0], S, N_MC, gen(9)).agrees_with(exact.item())


# -- maximum entropy (Claim 9) -------------------------------------------------------------------
def test_gaussian_has_the_largest_entropy_for_its_covariance():
    g = gen(10)
    S = theory.random_spd(3, g)
    ent = theory.entropy_same_covariance(S)
    assert ent["gaussian"] > ent["laplace"] > ent["uniform"]
    # the uniform and Laplace constructions do have covariance S
    root = monte_carlo._root(S)
    for white in (torch.rand(N_MC, 3, generator=g, dtype=DT) * 2 * math.sqrt(3) - math.sqrt(3),
                  torch.distributions.Laplace(0.0, 1 / math.sqrt(2)).sample((N_MC, 3)).double()):
        x = white @ root.T
        torch.testing.assert_close(x.T.cov(), S, atol=0.05, rtol=0.02)
    vals, vecs = torch.linalg.eigh(S)
    m = 0.9 * vals[-1].sqrt() * vecs[:, -1]
    mix = theory.mc_mixture_entropy([0.5, 0.5], torch.stack([m, -m]),
                                    torch.stack([S - torch.outer(m, m)] * 2), N_MC, g)
    assert mix.value + 4 * mix.stderr < ent["gaussian"]


# -- errors name the bad argument ----------------------------------------------------------------
def test_errors_name_the_bad_argument():
    I2, mu = torch.eye(2, dtype=DT), torch.zeros(2, dtype=DT)
    not_psd = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="S0: expected a positive-definite"):
        theory.kl_gaussians(mu, not_psd, mu, I2)
    with pytest.raises(ValueError, match="S1: expected a positive-definite"):
        theory.kl_gaussians(mu, I2, mu, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="S0: covariance is not symmetric"):
        theory.kl_gaussians(mu, torch.tensor([[1.0, 0.5], [0.0, 1.0]]), mu, I2)
    with pytest.raises(ValueError, match=r"mu1: expected shape \(\.\.\., 2\)"):
        theory.kl_gaussians(mu, I2, torch.zeros(3), I2)
    with pytest.raises(ValueError, match="S1: dimension 3"):
        theory.kl_gaussians(mu, I2, mu, torch.eye(3))
    with pytest.raises(ValueError, match="S: expected a square"):
        theory.gaussian_entropy(torch.ones(2, 3))
    with pytest.raises(ValueError, match="Sigma_noise: expected a positive-definite"):
        theory.mutual_information_linear_gaussian(torch.ones(2, 2), I2, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="Sigma_x: expected a positive semi-definite"):
        theory.mutual_information_linear_gaussian(torch.ones(2, 2), not_psd, I2)
    with pytest.raises(ValueError, match=r"A: expected \(m, 2\)"):
        theory.mutual_information_linear_gaussian(torch.ones(2, 3), I2, I2)
    with pytest.raises(ValueError, match="sigma: expected a positive"):
        theory.kl_isotropic(mu, mu, 0.0)
    with pytest.raises(ValueError, match="mu0: contains NaN"):
        theory.kl_isotropic(torch.tensor([float("nan"), 0.0]), mu, 1.0)
    toy = theory.make_linear_toy()
    with pytest.raises(ValueError, match="objective: expected one of"):
        theory.run_linear_unlearning(toy, "max-entropy")
    with pytest.raises(ValueError, match="alpha: expected a non-negative"):
        theory.run_linear_unlearning(toy, alpha=-1)
    with pytest.raises(ValueError, match="noise_scale"):
        theory.run_linear_unlearning(toy, noise_scale=0)
    with pytest.raises(ValueError, match="k: expected"):
        theory.make_linear_toy(k=3)
    with pytest.raises(ValueError, match="y: expected as many"):
        theory.rank_correlation([1.0, 2.0, 3.0], [1.0, 2.0])


# -- the chapter's claims on the exact model (Claims 2-8, 12) --------------------------------------
@pytest.fixture(scope="module")
def toy():
    return theory.make_linear_toy(seed=0)


@pytest.fixture(scope="module")
def runs(toy):
    import pandas as pd
    return {obj: pd.DataFrame(theory.run_linear_unlearning(toy, obj, steps=300, seed=0))
            for obj in theory.OBJECTIVES}


def test_the_exact_model_reconstructs_and_the_channel_is_exact(toy):
    assert torch.allclose(toy.D @ toy.W0 @ toy.U_f, toy.U_f, atol=1e-10)
    assert torch.allclose(toy.D @ toy.W0 @ toy.U_r, toy.U_r, atol=1e-10)
    # the toy's MI is the generic closed form, and matches sampling the whole pipeline
    exact = toy.mutual_information(toy.W0, "forget").item()
    A, N = toy.D @ toy.W0, toy.channel_noise()
    assert exact == pytest.approx(
        theory.mutual_information_linear_gaussian(A, toy.input_cov("forget"), N).item(), rel=1e-10)
    assert theory.mc_mutual_information_linear_gaussian(A, toy.input_cov("forget"), N, N_MC,
                                                        gen(11)).agrees_with(exact)


def test_claim2_forget_information_goes_and_retain_information_stays(runs):
    ours = runs["noise"]
    assert ours.mi_forget.iloc[-1] <= 0.05 * ours.mi_forget.iloc[0]
    assert abs(ours.mi_retain.iloc[-1] - ours.mi_retain.iloc[0]) <= 0.02 * ours.mi_retain.iloc[0]


def test_claim3_the_noise_objective_is_bounded_below_and_reaches_its_floor(runs):
    gap = runs["noise"].objective - runs["noise"].objective_floor
    assert (gap >= -1e-12).all()
    assert gap.iloc[-1] <= 0.02 * gap.iloc[0]


def test_claims4_to_6_the_bounds_hold_at_every_step(toy, runs):
    c = torch.linalg.eigvalsh(toy.sigma_e ** 2 * toy.pair_output_metric())
    assert 0 < c[0] and c[-1] < 1
    for run in runs.values():
        for s in ("forget", "retain"):
            assert (run[f"kl_out_{s}"] <= run[f"kl_emb_{s}"] + 1e-9).all()
        assert ((run.pair_kl_batch - run.pair_l2_batch).abs() <= 1e-9 * run.pair_l2_batch).all()
        assert (run.kl_emb_forget <= run.surrogate_forget + 1e-9).all()
        assert (run.kl_out_forget <= run.pair_out_kl_forget + 1e-9).all()
        ratio = run.pair_out_kl_forget / run.surrogate_forget
        assert (ratio >= c[0].item() - 1e-9).all() and (ratio <= c[-1].item() + 1e-9).all()


def test_claim7_the_forget_law_ends_at_the_minimisers_not_at_the_target(toy, runs):
    out_star, emb_star = toy.forget_optimum_kl(1.0)
    end = runs["noise"].iloc[-1]
    assert emb_star > 0.1
    assert abs(end.kl_emb_forget - emb_star) <= 0.1 * emb_star
    assert abs(end.kl_out_forget - out_star) <= 0.1 * out_star


def test_claim8_divergence_maximisation_is_unbounded(toy, runs):
    values = []
    for t in (10.0, 100.0, 1000.0):
        values.append(toy.forget_divergences(toy.W0 + t * toy.W0 @ toy.U_f @ toy.U_f.T))
    for a, b in zip(values, values[1:]):
        assert b["recon"] >= 50 * a["recon"] and b["kl"] >= 50 * a["kl"]
    for name, key in (("max-loss", "recon_forget_divergence"), ("max-kl", "kl_forget_divergence")):
        v = runs[name][key]
        assert v.iloc[-1] >= 2 * v.iloc[150] and v.iloc[-1] >= 100 * v.iloc[10]


def test_claim12_across_alpha_and_noise_scale(toy):
    end = {}
    for alpha in (0.05, 1.0):
        for s in (0.25, 4.0):
            log = theory.run_linear_unlearning(toy, alpha=alpha, noise_scale=s, steps=200, seed=0)
            assert log[-1]["mi_forget"] <= 0.05 * log[0]["mi_forget"]
            assert abs(log[-1]["mi_retain"] - log[0]["mi_retain"]) <= 0.02 * log[0]["mi_retain"]
            out_star = toy.forget_optimum_kl(s)[0]
            assert abs(log[-1]["kl_out_forget"] - out_star) <= 0.1 * out_star
            end[alpha, s] = log[-1]
    for alpha in (0.05, 1.0):  # more forget information left with a larger noise scale
        assert end[alpha, 4.0]["mi_forget"] > end[alpha, 0.25]["mi_forget"]
    for s in (0.25, 4.0):  # more retain drift with a larger forget weight
        assert end[1.0, s]["kl_out_retain"] > end[0.05, s]["kl_out_retain"]


def test_runs_are_reproducible(toy):
    a = theory.run_linear_unlearning(toy, steps=5, seed=3)
    b = theory.run_linear_unlearning(toy, steps=5, seed=3)
    assert a == b


# -- helpers for the trained-model part (Claims 10-11) --------------------------------------------
def test_rank_correlation():
    x = torch.arange(10.0)
    assert theory.rank_correlation(x, x ** 3) == pytest.approx(1.0)
    assert theory.rank_correlation(x, -x) == pytest.approx(-1.0)


def test_embedding_audit_of_an_unchanged_model_is_zero():
    from i2i_unlearn.data import load_dataset

    model = small_mae().eval()
    images = load_dataset("mnist").images([0], split="eval", per_class=4)[0]
    audit = theory.embedding_audit(model, model, images)
    assert set(audit) == {"emb_change", "out_change", "to_noise_before", "to_noise_after",
                          "noise_spread"}
    assert all(v.shape == (4,) for v in audit.values())
    assert audit["emb_change"].abs().max() == 0 and audit["out_change"].abs().max() == 0
    torch.testing.assert_close(audit["to_noise_before"], audit["to_noise_after"])
