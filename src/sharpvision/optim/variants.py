"""SAM variants that change the descent direction: GSAM (Zhuang et al., ICLR 2022) and LookSAM (Liu et al., CVPR 2022).

Both keep SAM's ascent and add a gradient combiner on top of the two gradients a SAM step already has,
g = grad L(w) and g_s = grad L(w + e); neither costs an extra pass. GSAM's rho following the learning rate
is SAM's ``rho_min`` (any variant can use it).
"""

from __future__ import annotations

from typing import Any

import torch

from sharpvision.optim.sam import SAM


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """sum_i <a_i, b_i> in fp32 over a list of tensors, on the device (no host sync)."""
    return torch.stack([torch.vdot(x.float().flatten(), y.float().flatten()) for x, y in zip(a, b)]).sum()


class _WeightedVariant(SAM):
    """A SAM whose descent direction mixes in an extra direction with weight ``alpha`` (``default_alpha``)."""

    keeps_first_gradient = True
    default_alpha = 0.0

    def __init__(self, params: Any, base_optimizer: Any, alpha: float | None = None, **kwargs: Any) -> None:
        alpha = self.default_alpha if alpha is None else alpha
        if alpha < 0:
            raise ValueError(f"{type(self).__name__} alpha must be >= 0, got {alpha}")
        super().__init__(params, base_optimizer, **kwargs)
        self.alpha = alpha

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rho={self.defaults['rho']}, alpha={self.alpha}, "
                f"base={self.base_optimizer.__class__.__name__})")


class GSAM(_WeightedVariant):
    """Surrogate-gap guided SAM: descend on g_s - alpha * g_perp, g_perp = g - (<g, g_s> / ||g_s||^2) g_s.

    g_perp is the part of the gradient at w orthogonal to g_s; stepping against it lowers the surrogate gap
    L(w + e) - L(w) without changing the SAM loss to first order (juntang-zhuang/GSAM ``gradient_decompose``).
    ``alpha = 0`` is SAM. Zhuang et al. use alpha 0.4 for ViTs with rho following the lr (``rho_min``).
    """

    default_alpha = 0.4

    def _combine(self) -> None:
        if all(self.current_rho(group) == 0 for group in self.param_groups):
            return  # no ascent: g_s is g and g_perp is exactly 0 (computed, eps would leave a residue AdamW amplifies)
        g_s = [grad for _, _, grad in self._grads()]
        g = self._first_grads
        coef = _dot(g, g_s) / (_dot(g_s, g_s) + self.eps)
        for gi, gsi in zip(g, g_s):  # g_s <- g_s - alpha * (g - coef * g_s)
            gsi.mul_(1 + self.alpha * coef.to(gsi.dtype)).add_(gi.to(gsi.dtype), alpha=-self.alpha)


class LookSAM(_WeightedVariant):
    """LookSAM: full SAM every k steps, and in between one pass with the stored orthogonal direction reused.

    On a SAM step, g_v = g_s - (<g, g_s> / ||g||^2) g, the part of the SAM gradient orthogonal to the plain
    one, is stored and the step descends on g_s. On the steps between (:meth:`skip_step`, one forward and
    backward), it descends on g + alpha * (||g|| / ||g_v||) * g_v. The caller decides which steps run SAM
    (``make_step(sam_every=k)``); g_v lives in ``state_dict`` so a resumed run reuses the same direction.
    Liu et al. use k = 5, alpha = 0.7. Before the first SAM step there is no g_v and a skipped step is plain.
    """

    default_alpha = 0.7

    def __init__(self, params: Any, base_optimizer: Any, alpha: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, base_optimizer, alpha, **kwargs)
        self._g_v: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> its slice of g_v

    def _combine(self) -> None:
        items = self._grads()
        g_s = [grad for _, _, grad in items]
        g = self._first_grads
        coef = _dot(g, g_s) / (_dot(g, g) + self.eps)
        self._g_v = {p: gsi - coef.to(gsi.dtype) * gi.to(gsi.dtype) for (_, p, gsi), gi in zip(items, g)}

    def _reuse(self) -> None:
        items = [(p, grad) for _, p, grad in self._grads() if p in self._g_v]
        if not items:
            return
        g = [grad for _, grad in items]
        g_v = [self._g_v[p] for p, _ in items]
        scale = self.alpha * _dot(g, g).sqrt() / (_dot(g_v, g_v).sqrt() + self.eps)
        for gi, gvi in zip(g, g_v):
            gi.add_(gvi * scale.to(gi.dtype))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        params = [p for group in self.param_groups for p in group["params"]]
        state["looksam_g_v"] = {i: self._g_v[p] for i, p in enumerate(params) if p in self._g_v}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("looksam_g_v", {})
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        self._g_v = {params[int(i)]: v.to(params[int(i)].device) for i, v in saved.items()}
