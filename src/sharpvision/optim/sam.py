"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) over any torch optimizer, and ASAM (Kwon et al., 2021).

SAM minimises max_{||e|| <= rho} L(w + e). One step takes two forward/backward passes:

1. the gradient g at w gives the first-order worst case e = rho * g / ||g||
   (ASAM: e = rho * T^2 g / ||T g|| with T = diag(|w| + eta), so the radius scales with each weight;
   Kwon et al. use eta = 0.01, which also lets zero-initialised weights move; eta = 0 is davda54/sam's form);
2. the gradient at w + e is the descent direction; w is restored *exactly* (an in-place copy, not a
   subtraction, so rho = 0 reproduces the base optimizer bit for bit) and the base optimizer steps.

Weight decay stays out of e: e uses the raw loss gradient, and the base optimizer applies its own
(decoupled or L2) decay at the restored point. Gradient clipping belongs to the descent gradient:
clip between the second backward and :meth:`SAM.unperturb_and_step` (clipping before the ascent is
a no-op because e is normalised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from sharpvision.passes import frozen_bn_stats, replay_rng


class SAM(Optimizer):
    """SAM / ASAM wrapping a base optimizer.

    ``SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3, weight_decay=0.05)``.

    Two ways to drive it:

    * ``opt.step(closure)``: the closure zeroes nothing, runs forward and backward and returns the
      loss; SAM calls it at w and at w + e and returns the loss at w. Pass ``model=`` to keep
      BatchNorm running statistics from the first pass only.
    * ``loss(w).backward(); opt.perturb(); opt.zero_grad(); loss(w + e).backward(); [clip];
      opt.unperturb_and_step()`` for loops that manage the passes themselves (AMP, DDP no_sync).

    ``param_groups`` are the base optimizer's own, so LR schedulers, ``add_param_group`` and
    per-group ``rho`` work on the wrapper as on any optimizer; ``state_dict`` is the base optimizer's.
    """

    # GradScaler.step hands an optimizer with this flag its scale instead of unscaling and stepping it blindly,
    # which lets SAM refuse fp16 loss scaling clearly instead of failing half-perturbed.
    _step_supports_amp_scaling = True

    keeps_first_gradient = False  # variants that combine g (at w) with g_s (at w + e) set it

    def __init__(self, params: Any, base_optimizer: Callable[..., Optimizer], rho: float = 0.05,
                 adaptive: bool = False, eta: float = 0.01, eps: float = 1e-12, model: nn.Module | None = None,
                 rho_min: float | None = None, min_lr_ratio: float = 0.0, **base_kwargs: Any) -> None:
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        if rho_min is not None and not 0 <= rho_min <= rho:
            raise ValueError(f"SAM rho_min must be in [0, rho={rho}], got {rho_min}")
        if not 0 <= min_lr_ratio < 1:
            raise ValueError(f"SAM min_lr_ratio must be in [0, 1), got {min_lr_ratio}")
        if eta < 0:
            raise ValueError(f"ASAM eta must be >= 0, got {eta}")
        if eps <= 0:
            raise ValueError(f"SAM eps must be > 0, got {eps}")
        super().__init__(params, dict(rho=rho, rho_min=rho_min, adaptive=adaptive, eta=eta, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        for group in self.param_groups:  # the lr that rho_max goes with; a scheduler's initial_lr wins later
            group.setdefault("peak_lr", group["lr"])
        self.eps = eps
        self.min_lr_ratio = min_lr_ratio
        self.model = model
        self._backup: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._first_grads: list[torch.Tensor] = []  # g at w, kept for the variants' gradient combiners
        self._first_count = 0  # perturbations whose g is summed in _first_grads
        self._shaped = False

    @property
    def state(self) -> Any:  # the base optimizer's state (momenta), shown through the wrapper
        return self.base_optimizer.state

    @state.setter
    def state(self, value: Any) -> None:  # Optimizer.__init__ assigns it once; the base owns the real one
        pass

    def __getstate__(self) -> dict[str, Any]:  # deepcopy / pickle: keep the wrapper's own attributes
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def perturbed(self) -> bool:
        return bool(self._backup)

    def _grads(self) -> list[tuple[dict, torch.Tensor, torch.Tensor]]:
        for group in self.param_groups:  # groups added to the base optimizer directly lack SAM's keys
            for key in ("rho", "rho_min", "adaptive", "eta"):
                group.setdefault(key, self.defaults[key])
        return [(g, p, p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None]

    def current_rho(self, group: dict) -> float:
        """The group's radius now: rho, or with ``rho_min`` set, GSAM's rho following the learning rate.

        rho_t = rho_min + (rho - rho_min) * (lr - lr_min) / (lr_max - lr_min), lr_max the group's peak lr
        (a scheduler's ``initial_lr``), lr_min = min_lr_ratio * lr_max; the ratio is clipped to [0, 1], so a
        warmup below lr_min keeps rho_min. Stateless: a resumed run gets the same rho from the same lr.
        """
        if group.get("rho_min") is None:
            return group["rho"]
        peak = group.get("initial_lr", group["peak_lr"])
        low = self.min_lr_ratio * peak
        share = min(max((group["lr"] - low) / (peak - low), 0.0), 1.0) if peak > low else 1.0
        return group["rho_min"] + (group["rho"] - group["rho_min"]) * share

    @staticmethod
    def _scale(group: dict, p: torch.Tensor) -> torch.Tensor | None:
        """ASAM's T = |w| + eta for adaptive groups; None (identity) otherwise."""
        return p.abs() + group["eta"] if group["adaptive"] else None

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """||T g||_2 over all parameters (T = |w| + eta for ASAM groups, identity otherwise), fp32, on device."""
        items = self._grads()
        if not items:
            raise RuntimeError("SAM.perturb: no parameter has a gradient; call backward() first")
        scaled = [grad if (t := self._scale(group, p)) is None else t * grad for group, p, grad in items]
        norms = torch._foreach_norm([s.float() for s in scaled])
        return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))

    @torch.no_grad()
    def perturb(self) -> torch.Tensor:
        """Move to w + e (the ascent step); returns ||T g|| (a device tensor, no host sync)."""
        if self.perturbed:
            raise RuntimeError("SAM.perturb called twice without unperturb_and_step")
        norm = self.grad_norm()
        scale = 1.0 / (norm + self.eps)
        items = self._grads()
        if self.keeps_first_gradient:  # summed over the groups of one step (m-sharpness splits), averaged when used
            first = [grad.detach() for _, _, grad in items]
            if self._first_grads:
                torch._foreach_add_(self._first_grads, first)
            else:
                self._first_grads = [g.clone() for g in first]
            self._first_count += 1
        for group, p, grad in items:
            e = grad * (self.current_rho(group) * scale).to(grad.dtype)
            if (t := self._scale(group, p)) is not None:
                e = e * t.square()
            self._backup.append((p, p.detach().clone()))
            p.add_(e)
        torch.clear_autocast_cache()  # an enclosing autocast would otherwise reuse its casts of the old weights
        return norm

    @torch.no_grad()
    def unperturb(self) -> None:
        """Restore w exactly (in-place copy keeps storage and addresses, so compiled graphs stay valid)."""
        for p, saved in self._backup:
            p.copy_(saved)
        self._backup = []
        torch.clear_autocast_cache()

    @torch.no_grad()
    def shape_gradient(self) -> None:
        """Turn ``p.grad`` into the variant's descent direction; call it before clipping (once per step).

        Plain SAM descends on g_s as it is; GSAM and LookSAM override :meth:`_combine` (after the ascent) and
        :meth:`_reuse` (on steps that skip it). The step methods call it themselves if the loop did not.
        """
        if not self._shaped:
            if self._first_count > 1:
                torch._foreach_div_(self._first_grads, float(self._first_count))
            self._combine() if self.perturbed else self._reuse()
            self._forget_first_gradient()
            self._shaped = True

    @property
    def first_gradient(self) -> list[torch.Tensor]:
        """g at w kept for the variants (summed over this step's perturbations so far); edited in place by a
        distributed step to average it over workers before :meth:`shape_gradient`. Empty for plain SAM."""
        return self._first_grads

    def _forget_first_gradient(self) -> None:
        self._first_grads = []
        self._first_count = 0

    def _combine(self) -> None:
        """After the second backward: p.grad holds g_s = grad L(w + e), ``self._first_grads`` g (if kept)."""

    def _reuse(self) -> None:
        """On a step without the ascent: p.grad holds g = grad L(w)."""

    @torch.no_grad()
    def unperturb_and_step(self) -> None:
        """Restore w and step the base optimizer with the gradient taken at w + e."""
        if not self.perturbed:
            raise RuntimeError("SAM.unperturb_and_step called before perturb")
        self.step()  # through the instance's step, which LR schedulers wrap to track optimizer steps

    @torch.no_grad()
    def skip_step(self) -> None:
        """A step without the ascent (SAM-k's and LookSAM's in-between steps): one pass, then the base step.

        Call it after a single backward at w; LookSAM adds its stored direction here, plain SAM just steps.
        """
        if self.perturbed:
            raise RuntimeError("SAM.skip_step called while perturbed; use unperturb_and_step")
        self.shape_gradient()
        self._base_step()

    def _base_step(self) -> None:
        """The base optimizer's step on the shaped gradient; the next step shapes its own again."""
        self.base_optimizer.step()
        self._shaped = False

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """A full SAM step: closure at w, perturb, closure at w + e, restore, base step. Returns L(w).

        Without a closure, after :meth:`perturb` and the second backward, it is :meth:`unperturb_and_step`.
        """
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            self.unperturb()
            self.grad_scale = self.found_inf = None
            raise RuntimeError("SAM does not support torch.amp.GradScaler (fp16 loss scaling): a scaler unscales "
                               "once per step and SAM takes two backward passes; use bf16 autocast without a "
                               "scaler (the weights were restored to w, no step was taken)")
        if closure is None and self.perturbed:
            self.shape_gradient()
            self.unperturb()
            self._base_step()
            return None
        if closure is None:
            raise RuntimeError("SAM.step needs a closure that runs forward and backward and returns the loss; "
                               "or call perturb() and unperturb_and_step() around your own second pass")
        closure = torch.enable_grad()(closure)
        self.zero_grad(set_to_none=True)
        try:
            with replay_rng() as replay:
                loss = closure()
                self.perturb()
                self.zero_grad(set_to_none=True)
                replay()
                with frozen_bn_stats(self.model):
                    closure()
                self.shape_gradient()
        finally:
            self.unperturb()  # never leave the weights at w + e, even if a closure raised
            self._forget_first_gradient()
        self._base_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        if self.perturbed:
            raise RuntimeError("SAM.state_dict while perturbed: the weights are w + e; save after the step")
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups

    def __repr__(self) -> str:
        kind = "ASAM" if self.param_groups and self.param_groups[0]["adaptive"] else "SAM"
        return f"{kind}(rho={self.defaults['rho']}, base={self.base_optimizer.__class__.__name__})"
