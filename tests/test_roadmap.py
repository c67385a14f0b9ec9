"""The ConvNeXt paper's roadmap (Liu et al. 2022, Fig. 2): each step changes what the paper changes and nothing
else, costs the paper's FLOPs, starts at timm's ResNet-50 and ends at timm's ConvNeXt-T, and works at 28 px with
the analysis pieces. FLOPs are counted on the meta device (no memory, no arithmetic); the networks that compute
are the micro ones, plus ResNet-50 and ConvNeXt-T at 32 px.
"""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sharpvision import models
from sharpvision.analysis.core import blocks
from sharpvision.analysis.hessian import hessian_eigenvalues_per_block
from sharpvision.analysis.norms import weight_norms
from sharpvision.analysis.sparsity import active_neuron_fraction
from sharpvision.models import registry
from sharpvision.models.cifar import cifar_convnext
from sharpvision.models.roadmap import STEPS, Design, RoadmapNet

PAPER_GFLOPS = [4.1, 4.5, 4.4, 2.4, 5.3, 4.6, 4.1, 4.1, 4.2, 4.2, 4.3, 4.2, 4.2, 4.2, 4.2, 4.5]  # Fig. 2, in order
MICRO = [step.name + "_micro" for step in STEPS]
# the fields each step changes from its base (the one before; GELU continues from kernel 7)
CHANGED = [set(), {"depths"}, {"stem"}, {"depthwise"}, {"dims"}, {"inverted"}, {"dw_first"}, {"kernel_size"},
           {"kernel_size"}, {"kernel_size"}, {"kernel_size"}, {"act"}, {"one_act"},
           {"one_norm", "conv_bias", "ls_init_value", "init"}, {"norm"}, {"separate_downsample"}]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in model.parameters())


def gmacs(model: nn.Module, size: int = 224) -> float:
    """Multiply-adds of one forward at ``size`` px, in billions (FLOPs / 2, as the paper counts)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def test_sixteen_steps_registered_in_order_at_both_scales() -> None:
    names = models.list_models()
    assert [s.name for s in STEPS] == [n for n in names if n.startswith("roadmap_") and not n.endswith("_micro")]
    assert STEPS[0].name == "roadmap_00_resnet50" and STEPS[-1].name == "roadmap_15_convnext_t"
    assert MICRO == [n for n in names if n.startswith("roadmap_") and n.endswith("_micro")]
    for step in STEPS:
        assert models.default_img_size(step.name) == 224 and models.default_img_size(step.name + "_micro") == 28
        assert models.family(step.name) == ("resnet" if step.index < 2 else "convnext")
        assert f"({registry.PAPER})" in models.describe(step.name)
        assert f"({registry.MICRO})" in models.describe(step.name + "_micro")
        assert registry.REGISTRY[step.name].kwargs == dataclasses.asdict(step.design)


@pytest.mark.parametrize("scale", ["design", "micro"])
def test_each_step_changes_only_what_the_paper_changes(scale: str) -> None:
    fields = [f.name for f in dataclasses.fields(Design)]
    assert getattr(STEPS[0], scale) == (Design() if scale == "design" else STEPS[0].micro)
    for step, changed in zip(STEPS, CHANGED):
        base = getattr(STEPS[step.base], scale)
        assert {f for f in fields if getattr(getattr(step, scale), f) != getattr(base, f)} == changed, step.name
    assert STEPS[11].base == 8 and STEPS[8].design.kernel_size == 7


def test_gflops_follow_the_paper_step_by_step() -> None:
    """Within 5% of Fig. 2 at every step; the ends equal timm's own resnet50 (4.09) and convnext_tiny (4.46)."""
    assert [s.paper_gflops for s in STEPS] == PAPER_GFLOPS
    with torch.device("meta"):
        ours = [gmacs(RoadmapNet(step.design)) for step in STEPS]
        ends = [gmacs(timm.create_model(name)) for name in ("resnet50", "convnext_tiny")]
    off = {s.name: round(g, 3) for s, g in zip(STEPS, ours) if abs(g / s.paper_gflops - 1) > 0.05}
    assert not off, f"more than 5% off the paper's GFLOPs: {off}"
    assert [ours[0], ours[-1]] == pytest.approx(ends, rel=1e-9)


def test_ends_have_timms_parameters() -> None:
    with torch.device("meta"):
        first, last = models.create("roadmap_00_resnet50"), models.create("roadmap_15_convnext_t")
        resnet50, convnext_tiny = timm.create_model("resnet50"), timm.create_model("convnext_tiny")
        convnext_conv_mlp = timm.create_model("convnext_tiny", conv_mlp=True)  # its MLP as 1x1 convs, as ours
    assert n_params(first) == n_params(resnet50) == 25_557_032
    assert n_params(last) == n_params(convnext_tiny) == 28_589_128
    assert shapes(first) == shapes(resnet50) and shapes(last) == shapes(convnext_conv_mlp)


def _timm_key_resnet(key: str) -> str:
    key = key.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.").replace("head.fc.", "fc.")
    if key.startswith("stages."):
        _, stage, _, rest = key.split(".", 3)
        key = f"layer{int(stage) + 1}.{rest}".replace(".norm", ".bn")
    return key


def _timm_key_convnext(key: str) -> str:
    for ours, theirs in ((".conv1.", ".conv_dw."), (".norm1.", ".norm."), (".conv2.", ".mlp.fc1."),
                         (".conv3.", ".mlp.fc2.")):
        key = key.replace(ours, theirs)
    return key


@pytest.mark.parametrize(("name", "timm_model", "rename"), [
    ("roadmap_00_resnet50", lambda: timm.create_model("resnet50"), _timm_key_resnet),
    ("roadmap_15_convnext_t", lambda: timm.create_model("convnext_tiny", conv_mlp=True), _timm_key_convnext),
    ("roadmap_15_convnext_t_micro",  # convnext_micro's builder, with the roadmap's one more stage-3 block
     lambda: cifar_convnext(depths=(1, 1, 3, 1), dims=(32, 64, 128, 256), patch_size=2, conv_mlp=True),
     _timm_key_convnext),
])
def test_ends_compute_what_timm_computes(name: str, timm_model, rename, one_thread) -> None:
    """timm's weights, renamed, load into ours (every key, every shape) and give the same logits."""
    torch.manual_seed(0)
    ours, theirs = models.create(name).eval(), timm_model().eval()
    state = theirs.state_dict()
    ours.load_state_dict({key: state[rename(key)] for key in ours.state_dict()})
    assert len(ours.state_dict()) == len(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MICRO)
def test_micro_steps_train_and_analyse_at_28px(name: str, one_thread) -> None:
    """A training step, the per-block groups, active-neuron fractions and weight norms on every micro step."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=28, in_chans=1)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    assert model.forward_features(x).shape[-1] >= 1
    nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    stages = [f"stages.{i}" for i in range(4)]
    assert list(blocks(model)) == ["stem", *stages, "head"]
    sparsity = active_neuron_fraction(model.train(), [(x, y)])
    assert list(sparsity["per_block"]) == stages and 0 < sparsity["overall"] < 1
    assert set(weight_norms(model)["per_block"]) == {"stem", *stages, "head"}


@pytest.mark.parametrize("name", ["roadmap_00_resnet50_micro", "roadmap_15_convnext_t_micro"])
def test_hessian_per_block_on_both_ends(name: str, one_thread) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, in_chans=1)
    data = [(torch.randn(8, 1, 28, 28), torch.arange(8) % 10)]
    result = hessian_eigenvalues_per_block(model, nn.functional.cross_entropy, data, method="power", iters=3)
    assert set(result["blocks"]) == {"stem", *(f"stages.{i}" for i in range(4)), "head"}


def test_micro_scaling_rule() -> None:
    """Depths and widths are the paper's / 3 (rounded), the stem's total stride is halved; the last micro step is
    ``convnext_micro`` with one more stage-3 block."""
    for step in STEPS:
        full, micro = step.design, step.micro
        assert micro.depths == tuple(round(d / 3) for d in full.depths)
        assert micro.dims == tuple(round(d / 3) for d in full.dims) or full.dims == (64, 128, 256, 512)
        assert (micro.stem_stride, micro.patch_size) == (1, 2)
        assert dataclasses.replace(micro, depths=full.depths, dims=full.dims, stem_stride=2, patch_size=4) == full
    assert STEPS[0].micro.dims == (21, 42, 84, 168)  # 64 / 3 -> 21, doubling per stage
    with torch.device("meta"):
        last = models.create("roadmap_15_convnext_t_micro", num_classes=10, in_chans=1)
        twin = models.create("convnext_micro", num_classes=10, in_chans=1, depths=(1, 1, 3, 1))
    assert n_params(last) == n_params(twin)


def test_design_rejects_inconsistent_switches() -> None:
    with pytest.raises(ValueError, match="dw_first"):
        Design(dw_first=True)
    with pytest.raises(ValueError, match="one_act"):
        Design(depthwise=True, inverted=True, one_act=True)
    with pytest.raises(ValueError, match="norm"):
        Design(norm="groupnorm")
    with pytest.raises(ValueError, match="patchify"):
        Design(separate_downsample=True)
    with pytest.raises(ValueError, match="one entry per stage"):
        Design(depths=(1, 1, 1))
