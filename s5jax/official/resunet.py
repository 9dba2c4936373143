"""The separator's conversion table: official ResUNet state_dict keys -> our Flax variables
(s5jax.models.resunet), the model size read from the checkpoint, and the check of its STFT buffers."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from .. import stft as stft_lib
from ..errors import CheckpointError
from ..models.configs import ResUNetConfig
from ..models.resunet import MASK_PARTS, ResUNetSeparator
from .rules import Rule, abstract_variables, apply_rules, require_fixed

def _bn_rules(torch_prefix: str, flax_prefix: str) -> list[Rule]:
    return [Rule(rf"{torch_prefix}\.weight", f"params/{flax_prefix}/scale"),
            Rule(rf"{torch_prefix}\.bias", f"params/{flax_prefix}/bias"),
            Rule(rf"{torch_prefix}\.running_mean", f"batch_stats/{flax_prefix}/mean"),
            Rule(rf"{torch_prefix}\.running_var", f"batch_stats/{flax_prefix}/var")]


# Keys of the official state_dict with `model.` stripped. `(\w+)` never matches '.' or '->'.
SEPARATOR_RULES: list[Rule] = [
    # fixed front-end buffers: checked against ours, not loaded
    Rule(r"base\.stft\.conv_(real|imag)\.weight", "fixed/stft_{0}"),
    Rule(r"base\.istft\.conv_(real|imag)\.weight", "fixed/istft_{0}"),
    Rule(r"base\.istft\.ola_window", "fixed/ola_window"),
    # present in the official checkpoint but never used in its forward pass:
    Rule(r".+\.num_batches_tracked", None),                                   # BatchNorm step counters
    Rule(r"base\.decoder_block\d+\.bn2\.(weight|bias|running_mean|running_var)", None),  # decoder bn2
    Rule(r"film\.decoder_block\d+->beta2\.(weight|bias)", None),              # its FiLM bias
    # label embedding: Sequential(Linear, LayerNorm, ReLU, Linear, LayerNorm, ReLU)
    Rule(r"label_embedding\.([03])\.weight", "params/label_embedding/linear{0}/kernel", "linear"),
    Rule(r"label_embedding\.([03])\.bias", "params/label_embedding/linear{0}/bias"),
    Rule(r"label_embedding\.([14])\.weight", "params/label_embedding/norm{0}/scale"),
    Rule(r"label_embedding\.([14])\.bias", "params/label_embedding/norm{0}/bias"),
    # front and back 1x1 convs, bn0
    *_bn_rules(r"base\.bn0", "base/bn0"),
    Rule(r"base\.(pre_conv|after_conv|out_conv)\.weight", "params/base/{0}/kernel", "conv2d"),
    Rule(r"base\.(pre_conv|after_conv|out_conv)\.bias", "params/base/{0}/bias"),
    # residual blocks: encoder_blockN.conv_block1, conv_block7a.conv_block1, decoder_blockN.conv_block2
    *_bn_rules(r"base\.(\w+)\.(conv_block[12])\.(bn[12])", "base/{0}/{1}/{2}"),
    Rule(r"base\.(\w+)\.(conv_block[12])\.(conv[12])\.weight", "params/base/{0}/{1}/{2}/kernel", "conv2d"),
    Rule(r"base\.(\w+)\.(conv_block[12])\.shortcut\.weight", "params/base/{0}/{1}/shortcut/kernel", "conv2d"),
    Rule(r"base\.(\w+)\.(conv_block[12])\.shortcut\.bias", "params/base/{0}/{1}/shortcut/bias"),
    # decoder up-sampling: bn1 then ConvTranspose2d
    *_bn_rules(r"base\.(decoder_block\d+)\.bn1", "base/{0}/bn1"),
    Rule(r"base\.(decoder_block\d+)\.conv1\.weight", "params/base/{0}/conv1/kernel", "conv_transpose2d"),
    # FiLM betas ('->' joins the module path of the block they feed)
    Rule(r"film\.(\w+)->(conv_block[12])->(beta[12])\.weight", "params/base/{0}/{1}/{2}/kernel", "linear"),
    Rule(r"film\.(\w+)->(conv_block[12])->(beta[12])\.bias", "params/base/{0}/{1}/{2}/bias"),
    Rule(r"film\.(decoder_block\d+)->beta1\.weight", "params/base/{0}/beta1/kernel", "linear"),
    Rule(r"film\.(decoder_block\d+)->beta1\.bias", "params/base/{0}/beta1/bias"),
]


def official_keys(cfg: ResUNetConfig) -> list[str]:
    """Every state_dict key (without `model.`) the official model of this size holds, in order."""
    bn = lambda p: [f"{p}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    def res(p, cin, cout, film):
        keys = bn(f"{p}.bn1") + bn(f"{p}.bn2") + [f"{p}.conv1.weight", f"{p}.conv2.weight"]
        if cin != cout:
            keys += [f"{p}.shortcut.weight", f"{p}.shortcut.bias"]
        fk = [f"film.{film}->beta{i}.{s}" for i in (1, 2) for s in ("weight", "bias")]
        return keys, fk

    base = ["base.stft.conv_real.weight", "base.stft.conv_imag.weight", "base.istft.ola_window",
            "base.istft.conv_real.weight", "base.istft.conv_imag.weight", *bn("base.bn0"),
            "base.pre_conv.weight", "base.pre_conv.bias"]
    film: list[str] = []
    cin = c0 = cfg.channels[0]
    for i, out in enumerate(cfg.channels, 1):
        k, f = res(f"base.encoder_block{i}.conv_block1", cin, out, f"encoder_block{i}->conv_block1")
        base += k
        film += f
        cin = out
    k, f = res("base.conv_block7a.conv_block1", cin, cfg.bottleneck_channels, "conv_block7a->conv_block1")
    base += k
    film += f
    cin = cfg.bottleneck_channels
    for i in range(1, len(cfg.channels) + 1):
        out = cfg.channels[len(cfg.channels) - i]
        p = f"base.decoder_block{i}"
        base += [f"{p}.conv1.weight", *bn(f"{p}.bn1")]
        k, f = res(f"{p}.conv_block2", 2 * out, out, f"decoder_block{i}->conv_block2")
        base += k + bn(f"{p}.bn2")
        film += [f"film.decoder_block{i}->beta{j}.{s}" for j in (1, 2) for s in ("weight", "bias")] + f
        cin = out
    del c0
    base += ["base.after_conv.weight", "base.after_conv.bias", "base.out_conv.weight", "base.out_conv.bias"]
    emb = [f"label_embedding.{i}.{s}" for i in (0, 1, 3, 4) for s in ("weight", "bias")]
    return base + emb + film


def _shape(sd: Mapping[str, np.ndarray], key: str, ndim: int, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {key!r} (not a complete separator checkpoint)")
    shape = tuple(np.shape(sd[key]))
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: key {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def infer_config(sd: Mapping[str, np.ndarray], source: str = "checkpoint", hop: int = 160) -> ResUNetConfig:
    """The model size from the shapes of an official state_dict (`model.` stripped). The hop is not
    stored in the checkpoint; the official one (160) is assumed."""
    cin = _shape(sd, "base.pre_conv.weight", 4, source)[1]
    n_enc = len([k for k in sd if re.fullmatch(r"base\.encoder_block\d+\.conv_block1\.conv1\.weight", k)])
    if n_enc == 0:
        raise CheckpointError(f"{source}: no key 'base.encoder_block1.conv_block1.conv1.weight'")
    channels = tuple(_shape(sd, f"base.encoder_block{i}.conv_block1.conv1.weight", 4, source)[0]
                     for i in range(1, n_enc + 1))
    # pools are not stored; the decoder's transposed-conv kernel sizes mirror them
    ups = [_shape(sd, f"base.decoder_block{i}.conv1.weight", 4, source) for i in range(1, n_enc + 1)]
    pools = tuple(tuple(int(s) for s in ups[n_enc - 1 - j][2:]) for j in range(n_enc))
    for i, shp in enumerate(ups, 1):
        if shp[1] != channels[n_enc - i]:
            raise CheckpointError(f"{source}: key 'base.decoder_block{i}.conv1.weight' has shape {shp}; "
                                  f"the decoder does not mirror the encoder")
    after = _shape(sd, "base.after_conv.weight", 4, source)[0]
    if after % (MASK_PARTS * cin):
        raise CheckpointError(f"{source}: key 'base.after_conv.weight' has {after} outputs, not a multiple "
                              f"of {MASK_PARTS} x {cin} input channels")
    slots = after // (MASK_PARTS * cin)
    cond, qdim = _shape(sd, "label_embedding.0.weight", 2, source)
    if qdim % slots:
        raise CheckpointError(f"{source}: query size {qdim} is not a multiple of {slots} slots")
    n_fft = _shape(sd, "base.istft.ola_window", 1, source)[0]
    try:
        return ResUNetConfig(
            input_channels=cin, num_slots=slots, num_classes=qdim // slots, channels=channels, pools=pools,
            bottleneck_channels=_shape(sd, "base.conv_block7a.conv_block1.conv1.weight", 4, source)[0],
            condition_dim=cond, n_fft=n_fft, hop=hop)
    except ValueError as e:
        raise CheckpointError(f"{source}: unsupported separator layout ({e})") from None


def abstract_separator_variables(cfg: ResUNetConfig) -> dict:
    """The variable tree (shapes only) of a separator of this size."""
    mix = np.zeros((1, cfg.input_channels, cfg.n_fft), np.float32)   # tiny; eval_shape computes nothing
    q = np.zeros((1, cfg.query_dim), np.float32)
    return abstract_variables(ResUNetSeparator(cfg), mix, q)


def check_front_end(fixed: Mapping[str, np.ndarray], cfg: ResUNetConfig, source: str) -> None:
    """The checkpoint's STFT / ISTFT buffers must equal the ones our front end computes."""
    sr, si = stft_lib.stft_conv_kernels(cfg.n_fft)
    ir, ii = stft_lib.istft_conv_kernels(cfg.n_fft)
    for name, ours in (("stft_real", sr), ("stft_imag", si), ("istft_real", ir), ("istft_imag", ii),
                       ("ola_window", stft_lib.ola_window(cfg.n_fft))):
        require_fixed(fixed, name, ours, source)


def convert_separator_state_dict(state_dict: Mapping[str, np.ndarray],
                                 source: str = "checkpoint") -> tuple[dict, dict]:
    """Official separator state_dict (keys without `model.`) -> (JSON config dict, Flax variables
    {'params', 'batch_stats'} as float32 numpy). Raises CheckpointError naming the offending key."""
    cfg = infer_config(state_dict, source)
    missing = [k for k in official_keys(cfg) if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r}" +
                              (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    variables, fixed = apply_rules(state_dict, SEPARATOR_RULES, abstract_separator_variables(cfg), source)
    check_front_end(fixed, cfg, source)
    return cfg.to_dict(), variables
