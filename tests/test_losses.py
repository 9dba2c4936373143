"""Training losses, the torch-exact optimiser and torch-mode BatchNorm against the official code's outputs
and hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import GOLDEN, require_torch
from s5jax.metric import EPS
from s5jax.training import losses as L


def test_tagger_pit_ce_matches_official_golden():
    d = np.load(GOLDEN / "losses" / "tagger.npz")
    per, _ = L.tagger_pit_per_clip(d["logits"], d["target"])
    np.testing.assert_allclose(np.asarray(per), d["per_sample"], rtol=1e-6, atol=2e-6)
    # the official loss: the batch mean of the per-clip PIT cross-entropy
    np.testing.assert_allclose(float(np.mean(np.asarray(per, np.float32))), d["loss"], rtol=1e-6)


def test_separator_class_aware_pit_matches_official_golden():
    d = np.load(GOLDEN / "losses" / "separator.npz")
    per, perm = L.separator_pit_per_clip(d["pred"], d["target"], d["label_vector"])
    np.testing.assert_allclose(np.asarray(per), d["per_sample"], rtol=1e-6, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(perm), d["best_perm"])
    np.testing.assert_allclose(float(np.mean(np.asarray(per, np.float32))), d["loss"], rtol=1e-6)


def test_separator_loss_matches_resunet_golden_pair_table():
    d = np.load(GOLDEN / "resunet" / "golden.npz")
    cost = np.asarray(L.separator_pair_cost(d["loss_pred"], d["loss_target"], d["loss_labels"]))
    full = d["loss_pair_neg_snr"]
    live = (cost < L.PENALTY / 2) & (cost != 0)   # silent diagonal entries are 0 by rule
    np.testing.assert_allclose(cost[live], full[live], rtol=1e-5, atol=1e-5)
    per, perm = L.separator_pit_per_clip(d["loss_pred"], d["loss_target"], d["loss_labels"])
    np.testing.assert_allclose(np.asarray(per), d["loss_best"], atol=2e-6)
    np.testing.assert_array_equal(np.asarray(perm), d["loss_best_perm"])


def test_tagger_pit_hand_case():
    # output tracks swapped relative to the targets: PIT finds the swap, loss = CE of the matched tracks
    logits = np.full((1, 3, 19), -5.0, np.float32)
    logits[0, 0, 7], logits[0, 1, 3], logits[0, 2, 18] = 4.0, 2.0, 3.0
    target = np.zeros((1, 3, 19), np.float32)
    target[0, 0, 3] = target[0, 1, 7] = target[0, 2, 18] = 1.0
    per, perm = L.tagger_pit_per_clip(logits, target)

    def ce(row, k):
        return -(row[k] - np.log(np.exp(row).sum()))
    want = np.mean([ce(logits[0, 1], 3), ce(logits[0, 0], 7), ce(logits[0, 2], 18)])
    assert perm.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(float(per[0]), want, rtol=1e-4)


def test_separator_pit_hand_cases():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((3, 200)).astype(np.float32)
    lv = np.zeros((1, 3, 18), np.float32)
    lv[0, 0, 4] = lv[0, 1, 4] = 1.0                    # class 4 twice, slot 2 silent
    pred = np.stack([s[1], 0.5 * s[0], 7 * s[2]])[None]   # the duplicates come out swapped
    target = np.stack([s[0], s[1], np.zeros(200, np.float32)])[None]
    per, perm = L.separator_pit_per_clip(pred, target, lv)
    assert perm.tolist() == [[1, 0, 2]]
    snr_half = 10 * np.log10(np.sum(s[0] ** 2) / np.sum((0.5 * s[0]) ** 2))  # 0.5 s -> 6.02 dB
    exact = 10 * np.log10((np.sum(s[1] ** 2) + EPS) / EPS)          # x = s: epsilon-limited
    # silent slot: 0 whatever the output; the mean over 3 slots
    np.testing.assert_allclose(float(per[0]), -(snr_half + exact) / 3, rtol=1e-4)
    # different classes can never be matched: the penalty is what a forced mismatch costs
    lv2 = lv.copy()
    lv2[0, 1, 4], lv2[0, 1, 5] = 0.0, 1.0
    cost = np.asarray(L.separator_pair_cost(pred, target, lv2))
    assert cost[0, 0, 1] == L.PENALTY and cost[0, 1, 0] == L.PENALTY and cost[0, 2, 2] == 0.0
    assert cost[0, 2, 0] == L.PENALTY and cost[0, 0, 2] == L.PENALTY


def test_optimizer_matches_torch_adamw_amsgrad_with_clipping():
    torch = require_torch()
    import jax
    import optax
    from s5jax.training.optim import official_optimizer

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 3)).astype(np.float32)
    # large gradients, then small ones: the raw second moment falls and AMSGrad's running maximum (not the
    # current moment) sets the step; the first steps are clipped at norm 0.5
    scales = np.concatenate([np.full(10, 3.0), np.full(20, 0.01)]).astype(np.float32)
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=1e-2, amsgrad=True, weight_decay=0.0)
    trajectory = []
    for s in scales:
        opt.zero_grad()
        (s * (torch.tensor(x) @ w - torch.tensor(y)) ** 2).mean().backward()
        torch.nn.utils.clip_grad_norm_([w], 0.5)
        opt.step()
        trajectory.append(w.detach().numpy().copy())

    def max_error(make_tx):
        """make_tx(lr) -> optimiser; lr 1e-2 is an input of the step program, as in training."""
        @jax.jit                     # one program per optimiser, not ~100 eager ops per step
        def step(p, state, s, lr):
            g = jax.grad(lambda p: (s * (x @ p["w"] - y) ** 2).mean())(p)
            u, state = make_tx(lr).update(g, state, p)
            return optax.apply_updates(p, u), state

        p, state, err = {"w": w0}, make_tx(0.0).init({"w": w0}), 0.0
        for s, ref in zip(scales, trajectory):
            p, state = step(p, state, s, np.float32(1e-2))
            err = max(err, float(np.abs(np.asarray(p["w"]) - ref).max()))
        return err

    assert max_error(lambda lr: official_optimizer(lr, clip=0.5)) < 1e-5          # measured 1.7e-6
    # optax's own AMSGrad (bias correction before the max) does not follow torch: the reason for ours
    assert max_error(lambda lr: optax.chain(optax.clip_by_global_norm(0.5), optax.scale_by_amsgrad(),
                                            optax.scale(-lr))) > 1e-2


def test_batchnorm_train_mode_matches_torch():
    torch = require_torch()
    import jax
    from s5jax.models.batchnorm import TorchBatchNorm

    rng = np.random.default_rng(1)
    x = (3 + 2 * rng.standard_normal((4, 5, 6, 7))).astype(np.float32)       # [b, T, F, C]
    bn = TorchBatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), x)
    variables = {"params": {"scale": np.linspace(0.5, 2, 7, dtype=np.float32),
                            "bias": np.linspace(-1, 1, 7, dtype=np.float32)},
                 "batch_stats": variables["batch_stats"]}
    tb = torch.nn.BatchNorm2d(7)
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(variables["params"]["scale"]))
        tb.bias.copy_(torch.tensor(variables["params"]["bias"]))
    tb.train()
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    for _ in range(2):
        y_ref = tb(xt).detach().permute(0, 2, 3, 1).numpy()
        y, upd = bn.apply(variables, x, mutable=["batch_stats"])
        variables = {**variables, **upd}
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(variables["batch_stats"]["mean"]), tb.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(variables["batch_stats"]["var"]), tb.running_var.numpy(), rtol=1e-5)
    tb.eval()
    np.testing.assert_allclose(np.asarray(bn.apply(variables, x)),
                               tb(xt).detach().permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
