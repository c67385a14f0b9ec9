"""The ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T, one buildable model per step.

Liu et al. 2022 ("A ConvNet for the 2020s", Fig. 2 and Appendix Table 10) ask which of the design choices that
separate a hierarchical vision Transformer (Swin-T) from a ResNet actually matter: they start from ResNet-50 and
apply one modernisation at a time (stage ratio, patchify stem, depthwise convolution, width, inverted bottleneck,
moving the depthwise conv up, larger kernels, GELU, fewer activations, fewer norms, LayerNorm, separate
downsampling layers), training every intermediate network, until the last step is ConvNeXt-T. Here every step is
a :class:`Design` (a frozen set of architecture switches) and :data:`STEPS` lists them, each derived from its base
step by :func:`dataclasses.replace` with exactly the fields the paper changes, so the step-to-step difference is
the change and nothing else. :class:`RoadmapNet` builds any design from timm layers (``create_conv2d``,
``LayerNorm2d``, ``ClassifierHead`` / ``NormMlpClassifierHead``, ``DropPath``, timm's activations): step 0 has
exactly timm ``resnet50``'s parameters, step 15 exactly timm ``convnext_tiny``'s.

What the paper leaves open, decided here (docs/models.md has the table):

- Before the separate-downsampling step a stage downsamples as ResNet does: the first block's spatial conv has
  stride 2 and its shortcut is a 1x1 stride-2 conv + norm (timm ResNet's). The stem is conv + norm + activation
  (ResNet's, with a 3x3 stride-2 max-pool after the 7x7 stride-2 conv until the patchify step). The last step
  adds the three LayerNorms the paper names (after the stem, before each 2x2 stride-2 downsampling conv, after
  global pooling) and drops the stem's activation, as ConvNeXt has none.
- The expansion ratio stays 4 throughout. The paper's "width" is the bottleneck width of a ResNet block (64,
  128, 256, 512; 96 ... 768 after the width step) and the residual stream is 4x that; the inverted bottleneck
  swaps the two, so the residual stream becomes 96 ... 768 and the hidden layer 4x that. After moving the
  depthwise conv up, a stage's first block runs it on its input channels (stride 2), then 1x1 to the hidden width.
- The fewer-norms step, where the residual branch loses the norm that ended it, also takes ConvNeXt's block
  conventions: every conv has a bias, layer scale (init 1e-6) takes over from the zero-initialised last BN of
  timm's ResNet as what starts each residual branch near zero, and weights are initialised as timm's ConvNeXt
  does (truncated normal, std 0.02) instead of as timm's ResNet (Kaiming normal, fan-out).

Micro versions (28 px, CPU) take each step's design with depths and widths divided by 3 (rounded: depths
(1, 1, 2, 1) -> (1, 1, 3, 1) at the stage-ratio step; widths 21 ... 168 -> 32 ... 256 at the width step) and the
total stride of the stem halved (stem conv stride 1 before its max-pool; a 2x2 stride-2 patchify), so the last
micro step is ``convnext_micro``'s design with one more block in stage 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import (
    ClassifierHead,
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    calculate_drop_path_rates,
    create_conv2d,
    get_act_layer,
    trunc_normal_,
)
from torch import nn

NORMS: dict[str, type[nn.Module]] = {"batchnorm": nn.BatchNorm2d, "layernorm": LayerNorm2d}
EXPANSION = 4  # ResNet's bottleneck expansion and ConvNeXt's MLP ratio


@dataclass(frozen=True)
class Design:
    """One network of the roadmap: ResNet-50's switches as the defaults, each later step flips a few.

    ``dims`` are the paper's "widths": a ResNet bottleneck's inner width, or an inverted bottleneck's residual
    width (its hidden layer is ``EXPANSION`` times wider). The stem outputs ``dims[0]`` channels.
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    dims: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "resnet"  # "resnet": stem_kernel conv (stride stem_stride) + norm + act + 3x3 stride-2 max-pool
    stem_kernel: int = 7
    stem_stride: int = 2
    patch_size: int = 4  # "patchify": a patch_size x patch_size conv with stride patch_size (+ norm + act)
    depthwise: bool = False  # the spatial conv is depthwise (groups = channels) instead of dense
    inverted: bool = False  # inverted bottleneck: narrow residual stream, hidden layer EXPANSION times wider
    dw_first: bool = False  # the depthwise conv comes first in the block, before the two 1x1 convs
    kernel_size: int = 3  # of the spatial (depthwise) conv
    act: str = "relu"
    one_act: bool = False  # a single activation per block, between the two 1x1 convs
    one_norm: bool = False  # a single norm per block, after the depthwise conv
    norm: str = "batchnorm"  # "batchnorm" or "layernorm" (timm LayerNorm2d), everywhere
    separate_downsample: bool = False  # ConvNeXt's stem, LN + 2x2 stride-2 conv between stages, LN after pooling
    conv_bias: bool = False
    ls_init_value: float | None = None  # layer scale on the residual branch
    init: str = "resnet"  # "resnet" (Kaiming fan-out, last BN of each block zeroed) or "convnext" (trunc. normal)

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.dims):
            raise ValueError(f"depths {self.depths} and dims {self.dims} must have one entry per stage")
        if self.stem not in ("resnet", "patchify"):
            raise ValueError(f"stem must be 'resnet' or 'patchify', got {self.stem!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {self.norm!r}")
        if self.init not in ("resnet", "convnext"):
            raise ValueError(f"init must be 'resnet' or 'convnext', got {self.init!r}")
        if self.dw_first and not (self.depthwise and self.inverted):
            raise ValueError("dw_first moves the depthwise conv of an inverted bottleneck: needs depthwise, inverted")
        if (self.one_act or self.one_norm) and not self.dw_first:
            raise ValueError("one_act / one_norm keep the layer between / after the depthwise conv: needs dw_first")
        if self.separate_downsample and self.stem != "patchify":
            raise ValueError("separate_downsample comes with ConvNeXt's patchify stem: needs stem='patchify'")

    def summary(self) -> str:
        """One line: stem, block, activations, norms, downsampling, depths and widths."""
        k, p = self.kernel_size, self.patch_size
        if self.separate_downsample:
            stem, down = f"{p}x{p}/{p} conv + norm stem", "norm + 2x2/2 conv between stages"
        elif self.stem == "patchify":
            stem, down = f"{p}x{p}/{p} conv stem", "stride-2 first blocks"
        else:
            stem = f"{self.stem_kernel}x{self.stem_kernel}/{self.stem_stride} conv + max-pool stem"
            down = "stride-2 first blocks"
        spatial = f"{'depthwise' if self.depthwise else 'dense'} {k}x{k}"
        block = ("inverted bottleneck, " + (f"{spatial} first" if self.dw_first else f"{spatial} in the middle")
                 if self.inverted else f"bottleneck, {spatial}")
        norm = {"batchnorm": "BN", "layernorm": "LN"}[self.norm]
        act = {"relu": "ReLU", "gelu": "GELU"}.get(self.act, self.act)
        return (f"{stem}, {block}, {act} x{1 if self.one_act else 3}, {norm} x{1 if self.one_norm else 3}, "
                f"{down}, depths {self.depths} dims {self.dims}")


class RoadmapBlock(nn.Module):
    """A residual block of any roadmap step: three convs, each optionally followed by a norm and an activation.

    Bottleneck (ResNet): 1x1 in->w, kxk w->w (dense or depthwise, stride), 1x1 w->4w, act after the add.
    Inverted: 1x1 in->4w, kxk depthwise 4w->4w (stride), 1x1 4w->w. ``dw_first``: kxk depthwise in->in (stride),
    1x1 in->4w, 1x1 4w->w. Names follow timm's Bottleneck (``conv1 norm1 act1 ... act3``, ``downsample``), so the
    hidden activations are ``actK`` modules that the sparsity analysis finds; a removed layer is an ``Identity``.
    """

    def __init__(self, d: Design, in_chs: int, dim: int, stride: int, drop_path: float) -> None:
        super().__init__()
        out_chs, mid = (dim, EXPANSION * dim) if d.inverted else (EXPANSION * dim, dim)
        norm, act = NORMS[d.norm], get_act_layer(d.act)
        k, bias = d.kernel_size, d.conv_bias
        if d.dw_first:
            convs = [create_conv2d(in_chs, in_chs, k, stride=stride, depthwise=True, bias=bias),
                     create_conv2d(in_chs, mid, 1, bias=bias), create_conv2d(mid, out_chs, 1, bias=bias)]
            widths = (in_chs, mid, out_chs)
        else:
            convs = [create_conv2d(in_chs, mid, 1, bias=bias),
                     create_conv2d(mid, mid, k, stride=stride, depthwise=d.depthwise, bias=bias),
                     create_conv2d(mid, out_chs, 1, bias=bias)]
            widths = (mid, mid, out_chs)
        self.conv1, self.conv2, self.conv3 = convs
        keep_norm = (True, not d.one_norm, not d.one_norm)
        keep_act = (not d.one_act, True, not d.one_act)  # act3 acts after the residual add, as in ResNet
        self.norm1, self.norm2, self.norm3 = (norm(c) if kept else nn.Identity() for c, kept in zip(widths, keep_norm))
        self.act1, self.act2, self.act3 = (act(inplace=True) if kept else nn.Identity() for kept in keep_act)
        self.gamma = None if d.ls_init_value is None else nn.Parameter(torch.full((out_chs,), d.ls_init_value))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample: nn.Module = nn.Identity()
        if in_chs != out_chs or stride != 1:  # ResNet's projection shortcut
            self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=bias), norm(out_chs))
        self.out_chs = out_chs

    def zero_init_last(self) -> None:
        """timm ResNet's ``zero_init_last``: the branch's last BN starts at zero, so each block starts as identity."""
        if isinstance(self.norm3, nn.BatchNorm2d):
            nn.init.zeros_(self.norm3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)
        x = self.act1(self.norm1(self.conv1(x)))
        x = self.act2(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        if self.gamma is not None:
            x = x * self.gamma.reshape(1, -1, 1, 1)
        return self.act3(self.drop_path(x) + shortcut)


class RoadmapStage(nn.Module):
    """``downsample`` (ConvNeXt's LN + 2x2 stride-2 conv, or an identity) and ``blocks``, as timm's ConvNeXtStage."""

    def __init__(self, d: Design, in_chs: int, dim: int, depth: int, first: bool, drop_paths: list[float]) -> None:
        super().__init__()
        self.downsample: nn.Module = nn.Identity()
        stride = 1 if first else 2
        if d.separate_downsample and not first:
            self.downsample = nn.Sequential(NORMS[d.norm](in_chs),
                                            nn.Conv2d(in_chs, dim, 2, stride=2, bias=d.conv_bias))
            in_chs, stride = dim, 1
        blocks = []
        for i in range(depth):
            blocks.append(RoadmapBlock(d, in_chs, dim, stride if i == 0 else 1, drop_paths[i]))
            in_chs = blocks[-1].out_chs
        self.blocks = nn.Sequential(*blocks)
        self.out_chs = in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class RoadmapNet(nn.Module):
    """Any :class:`Design`, laid out as timm's ConvNeXt: ``stem``, ``stages.N.blocks.M``, ``head`` (``head.fc``)."""

    def __init__(self, design: Design, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        d = self.design = design
        self.num_classes, self.drop_rate = num_classes, drop_rate
        norm, stem_chs = NORMS[d.norm], d.dims[0]
        if d.separate_downsample:  # ConvNeXt's stem: patchify conv + LN, no activation
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_chs, d.patch_size, stride=d.patch_size,
                                                bias=d.conv_bias), norm(stem_chs))
        elif d.stem == "patchify":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_chs, d.patch_size, stride=d.patch_size,
                                                bias=d.conv_bias), norm(stem_chs), get_act_layer(d.act)(inplace=True))
        else:  # ResNet's stem (timm ResNet: conv1, bn1, act1, maxpool)
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_chs, d.stem_kernel, stride=d.stem_stride,
                                                padding=d.stem_kernel // 2, bias=d.conv_bias),
                                      norm(stem_chs), get_act_layer(d.act)(inplace=True),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        rates = calculate_drop_path_rates(drop_path_rate, list(d.depths), stagewise=True)  # linear over all blocks
        stages, in_chs = [], stem_chs
        for i, (depth, dim) in enumerate(zip(d.depths, d.dims)):
            stages.append(RoadmapStage(d, in_chs, dim, depth, i == 0, rates[i]))
            in_chs = stages[-1].out_chs
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        if d.separate_downsample:  # ConvNeXt's head: global pool -> LN -> fc
            self.head: nn.Module = NormMlpClassifierHead(in_chs, num_classes, drop_rate=drop_rate, norm_layer=norm)
        else:
            self.head = ClassifierHead(in_chs, num_classes, drop_rate=drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and self.design.init == "convnext":
                trunc_normal_(module.weight, std=0.02)  # timm ConvNeXt's _init_weights
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):  # timm ResNet's init_weights; its fc keeps torch's default
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RoadmapBlock) and self.design.init == "resnet":
                module.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def roadmap_net(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                **design: Any) -> RoadmapNet:
    """The registry's builder: :class:`Design` fields as keyword arguments (lists are taken as tuples)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in design.items()}
    return RoadmapNet(Design(**fields), num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                      drop_path_rate=drop_path_rate)


@dataclass(frozen=True)
class Step:
    """One step of the roadmap: its registry slug, the change it makes, the paper's GFLOPs and both designs."""

    index: int
    slug: str
    change: str
    paper_gflops: float  # Liu et al. 2022, Fig. 2 (ImageNet, 224 px)
    design: Design  # 224 px, as in the paper
    micro: Design  # 28 px, CPU-sized

    @property
    def name(self) -> str:
        return f"roadmap_{self.index:02d}_{self.slug}"

    @property
    def base(self) -> int:
        """The step this one changes: the one before, except GELU, which continues from kernel 7 (step 8)."""
        return 8 if self.slug == "gelu" else max(self.index - 1, 0)


RESNET50 = Design()
# depths and widths / 3 (rounded), stem total stride 2 instead of 4 (its conv stride 1, then the max-pool)
RESNET50_MICRO = Design(depths=(1, 1, 2, 1), dims=(21, 42, 84, 168), stem_stride=1, patch_size=2)

# slug, change, paper GFLOPs, fields changed at 224 px, fields changed at micro scale (None: the same)
_CHANGES: list[tuple[str, str, float, dict[str, Any], dict[str, Any] | None]] = [
    ("resnet50", "ResNet-50", 4.1, {}, None),
    ("stage_ratio", "stage ratio 3:4:6:3 -> 3:3:9:3", 4.5, dict(depths=(3, 3, 9, 3)), dict(depths=(1, 1, 3, 1))),
    ("patchify", "patchify stem", 4.4, dict(stem="patchify"), None),
    ("depthwise", "ResNeXt-ify: depthwise conv", 2.4, dict(depthwise=True), None),
    ("width96", "width 64 -> 96", 5.3, dict(dims=(96, 192, 384, 768)), dict(dims=(32, 64, 128, 256))),
    ("inverted_bottleneck", "inverted bottleneck", 4.6, dict(inverted=True), None),
    ("dw_first", "depthwise conv moved up", 4.1, dict(dw_first=True), None),
    ("kernel5", "kernel 3 -> 5", 4.1, dict(kernel_size=5), None),
    ("kernel7", "kernel 7", 4.2, dict(kernel_size=7), None),
    ("kernel9", "kernel 9", 4.2, dict(kernel_size=9), None),
    ("kernel11", "kernel 11", 4.3, dict(kernel_size=11), None),
    ("gelu", "ReLU -> GELU (from kernel 7)", 4.2, dict(act="gelu"), None),
    ("fewer_acts", "fewer activations", 4.2, dict(one_act=True), None),
    ("fewer_norms", "fewer norms (with ConvNeXt's conv biases, layer scale, init)", 4.2,
     dict(one_norm=True, conv_bias=True, ls_init_value=1e-6, init="convnext"), None),
    ("layernorm", "BN -> LN", 4.2, dict(norm="layernorm"), None),
    ("convnext_t", "separate downsampling layers: ConvNeXt-T", 4.5, dict(separate_downsample=True), None),
]


def _steps() -> tuple[Step, ...]:
    steps: list[Step] = []
    for index, (slug, change, gflops, full, micro) in enumerate(_CHANGES):
        step = Step(index, slug, change, gflops, RESNET50, RESNET50_MICRO)
        if index:
            base = steps[step.base]
            step = dataclasses.replace(step, design=dataclasses.replace(base.design, **full),
                                       micro=dataclasses.replace(base.micro, **(full if micro is None else micro)))
        steps.append(step)
    return tuple(steps)


STEPS: tuple[Step, ...] = _steps()
