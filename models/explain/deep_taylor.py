"""Deep Taylor decomposition (LRP with the z+ rule) of the anomaly score or a defect logit, via Captum.

What the inference backbone needs for LRP:
- batch-norm folded into the convolutions: Captum's z+ rule (``Alpha1_Beta0_Rule``) does not
  work on batch-norm layers, and ``models/fusion.py`` has already folded them, so every
  convolution carries its own affine map, as LRP wants;
- the static "same" padding (``StaticSameConv``) turned back into a plain ``nn.Conv2d``: it
  convolves with a buffer through ``F.conv2d``, which LRP's hooks cannot see. The equivalent
  ``nn.Conv2d`` (the zero-extended kernel, symmetric padding) gives the same outputs;
- rules for the custom activations: ReLU6 passes relevance through unchanged (Captum's
  ``IdentityRule``), as LRP does for ReLU; the ``Identity`` left by folding becomes a no-op
  ``Dropout``, which Captum already treats so.

Done on a copy of the stages, because LRP rewrites weights during its passes. PatchCore's own
head (3x3 average, grid pooling, standardisation, nearest-neighbour distance, reweighted max)
has no LRP rule: relevance crosses it by its gradient (gradient x input at the stage outputs),
and the residual additions of the inverted-residual blocks are crossed the same way; so this is
Deep Taylor on the backbone with the last steps linearised, which the report's checks judge.
"""

from __future__ import annotations

import copy

import torch
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, IdentityRule
from torch import nn

from models.explain.defect_classifier import DefectHead, pooled_features
from models.fusion import StaticSameConv, static_conv_inputs, static_form
from models.patchcore.anomaly_map import smooth
from models.patchcore.model import PatchCore


def _plain_conv(m: StaticSameConv, input_hw: tuple[int, int] | None = None) -> nn.Conv2d:
    """An equal ``nn.Conv2d`` for the input size it will see (a frame kept at its own aspect has
    another than the model's nominal one, and another padding)."""
    c = m.conv
    w, padding = (m.static_weight, m.padding) if input_hw in (None, m.input_hw) else static_form(c, input_hw)
    conv = nn.Conv2d(c.in_channels, c.out_channels, tuple(w.shape[-2:]), c.stride, padding, groups=c.groups, bias=True)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(c.bias if c.bias is not None else torch.zeros(c.out_channels))
    return conv.requires_grad_(False).to(w.device)


def lrp_ready(module: nn.Module, sizes: dict[nn.Module, tuple[int, int]] | None = None) -> nn.Module:
    """Rewrites a copied stage in place for Captum's LRP (see the module docstring); returns it.

    ``sizes``: each static convolution's input size for the frame to explain (default: the
    size its padding was fixed for)."""
    for name, child in list(module.named_children()):
        if isinstance(child, StaticSameConv):
            setattr(module, name, _plain_conv(child, (sizes or {}).get(child)))
        elif type(child) is nn.Identity:
            # Identity hands back its input tensor, which trips Captum's tensor hooks; a no-op
            # Dropout (eval) is the identity that Captum passes relevance through.
            setattr(module, name, nn.Dropout(0.0).eval())
        else:
            lrp_ready(child, sizes)
    for leaf in module.modules():
        if next(leaf.children(), None) is not None:
            continue
        if isinstance(leaf, nn.Conv2d):
            leaf.rule = Alpha1_Beta0_Rule(set_bias_to_zero=True)  # z+: positive weights, no bias
        elif isinstance(leaf, (nn.ReLU6, nn.Hardswish, nn.SiLU)):
            leaf.inplace = False  # an in-place output is its input tensor: Captum's hooks need two
            leaf.rule = IdentityRule()
    return module


def _statics(module: nn.Module) -> list[StaticSameConv]:
    return [m for m in module.modules() if isinstance(m, StaticSameConv)]


class DeepTaylorNet(nn.Module):
    """The score (or defect logits) rebuilt on LRP-ready copies of the stages PatchCore reads."""

    def __init__(
        self, model: PatchCore, head: DefectHead | None = None, input_hw: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        stages = model.extractor._stages
        self.names = [n for n, _ in stages]
        sizes = None
        if input_hw is not None and input_hw != model.config.input_hw:  # a frame at its own aspect
            example = torch.zeros(1, 3, *input_hw, device=model.mean.device)
            sizes = static_conv_inputs([m for _, m in stages], example)
        copies = []
        for _, stage in stages:
            twin = copy.deepcopy(stage)
            # The copy's convolutions take the sizes recorded on the original, in the same order.
            pairs = zip(_statics(stage), _statics(twin), strict=True)
            own = {c: sizes[o] for o, c in pairs if o in sizes} if sizes else None
            copies.append(lrp_ready(twin, own))
        self.stages = nn.ModuleList(copies)
        self.head = copy.deepcopy(head) if head is not None else None
        if self.head is not None:
            self.head.linear.rule = Alpha1_Beta0_Rule(set_bias_to_zero=True)
        # Kept outside the module tree: LRP walks only the copies above.
        self.__dict__["patchcore"] = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pc: PatchCore = self.__dict__["patchcore"]
        x = pc.normalize(images)
        wanted = set(pc.extractor.layers) | set(self.head.layers if self.head is not None else ())
        feats: dict[str, torch.Tensor] = {}
        if "pixels" in wanted:
            feats["pixels"] = torch.cat([x, -x], dim=1)
        for name, stage in zip(self.names, self.stages, strict=True):
            x = stage(x)
            if name in wanted:
                feats[name] = x
        if self.head is not None:
            return self.head(pooled_features(feats, self.head.layers))
        return pc.score_features(feats, (images.shape[-2], images.shape[-1]))[0]


def deep_taylor_map(
    model: PatchCore,
    images: torch.Tensor,
    *,
    head: DefectHead | None = None,
    class_index: int | None = None,
    sigma: float = 0.0,
    net: DeepTaylorNet | None = None,
) -> torch.Tensor:
    """Relevance per pixel, summed over colour channels: (B, H, W), signed; ``sigma`` > 0 smooths.

    Pass a prepared ``net`` to skip copying the stages again (the copy costs about a forward pass).
    """
    net = net or DeepTaylorNet(model, head, (int(images.shape[-2]), int(images.shape[-1])))
    x = images.to(model.mean.device).detach().clone().requires_grad_(True)
    attr = LRP(net).attribute(x, target=class_index if head is not None else None)
    m = attr.detach().sum(dim=1)
    if sigma > 0:
        m = smooth(m.unsqueeze(1), sigma).squeeze(1)
    return m
