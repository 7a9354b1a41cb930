"""Networks: the sinusoidal time embedding, a 2-D MLP, the DDPM U-Net and the Fashion-MNIST classifier.

The U-Net follows the original DDPM code (``diffusion_tf/models/unet.py``, Ho et al. 2020)
block for block, with the module names of its PyTorch port (pesser/pytorch_diffusion), so
``UNet.ddpm_cifar10()`` is the paper's CIFAR-10 network with exactly 35,746,307 parameters.

Every network is called as ``model(x, t)`` where ``t`` is a LongTensor of shape (B,) holding
the paper's t in 1..T; it goes into the sinusoidal embedding as is (no shift). The classifier,
whose features give the Fréchet classifier distance, is called as ``model(x)``.

Taught in chapters 06, 08 and 10.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "timestep_embedding",
    "MLPConfig",
    "MLP",
    "UNetConfig",
    "UNet",
    "count_parameters",
    "ClassifierConfig",
    "FashionClassifier",
    "zero_module",
]


# -----------------------------------------------------------------------------
# helpers


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """DDPM's sinusoidal embedding of integer timesteps: (B,) -> (B, dim), float32.

    Transcribes ``get_timestep_embedding`` of the DDPM TF code: frequencies
    exp(-log(max_period) * i / (half - 1)) for i < half = dim // 2, then [sin, cos], and one
    zero column when dim is odd. (improved-diffusion divides by ``half`` instead.)

    Taught in chapter 08.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got shape {tuple(t.shape)}")
    half = dim // 2
    if half < 2:
        raise ValueError(f"dim must be at least 4 (the formula divides by dim // 2 - 1), got {dim}")
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (DDPM's init_scale=0.) and return it.

    Taught in chapter 08.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters of ``model`` (only the trainable ones with ``trainable_only``).

    Works on the meta device too.

    Taught in chapter 08.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_t(t, batch: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a tensor of shape (B,) = ({batch},), got {type(t).__name__}")
    if t.shape != (batch,):
        raise ValueError(f"t must have shape (B,) = ({batch},) to match x, got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer (or real) timesteps, got dtype {t.dtype}")


# -----------------------------------------------------------------------------
# MLP for 2-D toy data


@dataclass
class MLPConfig:
    """The MLP's hyperparameters: data dimension, width, hidden layers, time-embedding width, output size.

    ``out_dim`` None means ``data_dim``; a learned variance needs 2 * ``data_dim``.

    Taught in chapter 06.
    """

    data_dim: int = 2
    hidden: int = 128
    layers: int = 3  # hidden layers, each gets the time embedding added before its SiLU
    time_dim: int = 64  # width of the sinusoidal embedding
    out_dim: int | None = None  # None: data_dim; 2 * data_dim for a learned variance


class MLP(nn.Module):
    """x (B, data_dim), t (B,) -> (B, out_dim or data_dim).

    h = x; for each layer: h = SiLU(Linear(h) + Linear(temb)); out = Linear(h), where
    temb = SiLU(Linear(sinusoidal(t))) is computed once.

    Taught in chapter 06.
    """

    def __init__(self, data_dim=2, hidden=128, layers=3, time_dim=64, out_dim=None):
        super().__init__()
        self.config = c = MLPConfig(data_dim, hidden, layers, time_dim, out_dim)
        for name in ("data_dim", "hidden", "layers", "time_dim", "out_dim"):
            v = getattr(c, name)
            if (v is not None or name != "out_dim") and (type(v) is not int or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if c.time_dim < 4:
            raise ValueError(
                f"time_dim must be at least 4 (the sinusoidal embedding's width), got {c.time_dim}"
            )
        self.time_mlp = nn.Sequential(nn.Linear(c.time_dim, c.hidden), nn.SiLU())
        # a generator, not a list of c.layers widths: a stored layers = 10**9 must not allocate
        # before checkpoints.check_model_fits stops the build at its parameter budget
        self.linears = nn.ModuleList(
            nn.Linear(c.hidden if i else c.data_dim, c.hidden) for i in range(c.layers)
        )
        self.time_projs = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.layers))
        self.out = nn.Linear(c.hidden, c.out_dim or c.data_dim)

    @classmethod
    def from_config(cls, config: MLPConfig | dict) -> "MLP":
        """The MLP that an :class:`MLPConfig` (or its dict) describes.

        Taught in chapter 06.
        """
        return cls(**(asdict(config) if isinstance(config, MLPConfig) else config))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output for x (B, data_dim) and timesteps t (B,): shape (B, out_dim or data_dim).

        Taught in chapter 06.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.config.data_dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, data_dim={self.config.data_dim}), got {shape}")
        _check_t(t, x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.config.time_dim).to(x.dtype))
        h = x
        for lin, proj in zip(self.linears, self.time_projs):
            h = F.silu(lin(h) + proj(temb))
        return self.out(h)


# -----------------------------------------------------------------------------
# the DDPM U-Net


def Normalize(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm of ``channels`` channels in ``groups`` groups, with eps = 1e-6 as in DDPM's TF code.

    Taught in chapter 08.
    """
    return nn.GroupNorm(groups, channels, eps=1e-6)  # tf.contrib.layers.group_norm's epsilon


class ResnetBlock(nn.Module):
    """DDPM's residual block: x (B, in_ch, H, W) and temb (B, temb_ch) -> (B, out_ch, H, W).

    h = conv1(SiLU(GroupNorm(x))) + Linear(SiLU(temb)); the output is
    conv2(Dropout(SiLU(GroupNorm(h)))) + shortcut(x), the shortcut a 1x1 conv where the channel
    count changes. :class:`UNet` zero-initializes conv2, so that each block starts as the identity.

    Taught in chapter 08.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = Normalize(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = Normalize(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)  # zero-initialized (UNet._init_weights)
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, temb):
        # The same sums as conv1(silu(norm1(x))) + proj(silu(temb)), then conv2(dropout(silu(norm2(h))))
        # + shortcut(x). In-place where the overwritten tensor is needed by nothing else: neither a
        # norm's output (silu is applied in place) nor a conv's output is saved for backward.
        """The block's output, (B, out_ch, H, W), for x (B, in_ch, H, W) and the time embedding (B, temb_ch).

        Taught in chapter 08.
        """
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h += self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=True)))
        h += self.nin_shortcut(x)  # a + b == b + a exactly in floating point
        return h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H * W positions, with a residual connection.

    x (B, C, H, W) -> (B, C, H, W). :class:`UNet` zero-initializes the output projection ``proj_out``.

    Taught in chapter 08.
    """

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = Normalize(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)  # zero-initialized

    def forward(self, x):
        """x + attention(GroupNorm(x)): (B, C, H, W) -> (B, C, H, W).

        Taught in chapter 08.
        """
        B, C, H, W = x.shape
        h = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): a free view when x is channels_last, else one copy. The
        # 1x1 convs q, k, v are one matmul with their weights stacked (the parameters stay three
        # convs); one head, and SDPA's default scale is C ** -0.5, as in DDPM. Tokens last-dim
        # contiguous let SDPA take its fused (flash) kernel rather than the unfused math path.
        h = h.permute(0, 2, 3, 1).reshape(B, 1, H * W, C).contiguous()
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight]).view(3 * C, C)
        b = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(h, w, b).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)
        h = F.linear(h, self.proj_out.weight.view(C, C), self.proj_out.bias)
        return x + h.view(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W) again, NHWC strides


class Downsample(nn.Module):
    """A stride-2 3x3 convolution with TF's "SAME" padding: (B, C, H, W) -> (B, C, H / 2, W / 2).

    Taught in chapter 08.
    """

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x):
        # TF's "SAME" padding for a stride-2 3x3 conv on an even size pads one pixel right/bottom
        """x downsampled: (B, C, H, W) -> (B, C, H / 2, W / 2) for even H and W.

        Taught in chapter 08.
        """
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def _phase_kernels(w: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (4 * O, I, 2, 2): the 3x3 kernel seen through a 2x nearest upsampling.

    Output pixel 2i + a of conv3x3(upsample(x)) reads upsampled rows 2i + a - 1, 2i + a, 2i + a + 1,
    i.e. source rows (i - 1, i, i) for a = 0 and (i, i, i + 1) for a = 1: taps that land on the
    same source row add up, giving 2-tap kernels (k0, k1 + k2) and (k0 + k1, k2); the same for
    columns. Phase (a, b) is block 2 * a + b of the output channels.
    """
    rows = torch.stack(
        [
            torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),
            torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2),
        ]
    )  # (2, O, I, 2, 3)
    k = torch.stack(
        [
            torch.stack([rows[..., 0], rows[..., 1] + rows[..., 2]], -1),
            torch.stack([rows[..., 0] + rows[..., 1], rows[..., 2]], -1),
        ],
        1,
    )  # (2, 2, O, I, 2, 2)
    return k.reshape(4 * w.shape[0], w.shape[1], 2, 2)


class Upsample(nn.Module):
    """conv3x3(nearest_upsample_2x(x)), as in DDPM: (B, C, H, W) -> (B, C, 2 * H, 2 * W).

    Computed without materializing the upsampled tensor: each of the four output phases
    (even/odd row, even/odd column) is a 2x2 convolution of x with sums of the 3x3 kernel's taps
    (:func:`_phase_kernels`), all four in one conv over x padded by 1, then interleaved. The same
    function (up to float rounding) with 16 multiply-adds per output pixel and input channel
    instead of 36; the parameters are still the one 3x3 conv.

    Taught in chapter 08.
    """

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        """x upsampled: (B, C, H, W) -> (B, C, 2 * H, 2 * W), NCHW or channels_last as x is.

        Taught in chapter 08.
        """
        B, _, H, W = x.shape
        O = self.conv.out_channels
        y = F.conv2d(
            x, _phase_kernels(self.conv.weight), self.conv.bias.repeat(4), padding=1
        )  # (B, 4O, H+1, W+1)
        # phase (a, b) at source pixel (i, j) is y[:, phase, i + a, j + b]
        if y.is_contiguous() or not y.is_contiguous(memory_format=torch.channels_last):
            y = y.view(B, 2, 2, O, H + 1, W + 1)
            out = torch.stack(
                [torch.stack([y[:, a, b, :, a : a + H, b : b + W] for b in (0, 1)], -1) for a in (0, 1)], 3
            )  # (B, O, H, 2, W, 2)
            return out.view(B, O, 2 * H, 2 * W)
        y = y.permute(0, 2, 3, 1).view(B, H + 1, W + 1, 2, 2, O)  # channels_last: keep it
        out = torch.stack(
            [torch.stack([y[:, a : a + H, b : b + W, a, b] for b in (0, 1)], 3) for a in (0, 1)], 2
        )  # (B, H, 2, W, 2, O)
        return out.view(B, 2 * H, 2 * W, O).permute(0, 3, 1, 2)


@dataclass
class UNetConfig:
    """The U-Net's hyperparameters, named as in DDPM's code; checked when built.

    The defaults are the paper's CIFAR-10 network. ``ch_mult`` has one entry per level (the
    resolution halves between levels), ``attn_resolutions`` lists the resolutions that get
    self-attention, and ``out_channels`` is 2 * ``in_channels`` for a learned variance.

    Taught in chapter 08.
    """

    in_channels: int = 3
    out_channels: int = 3  # 2 * in_channels for a learned variance (learn_sigma)
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resolution: int = 32
    groups: int = 32

    def __post_init__(self):
        self.ch_mult = tuple(self.ch_mult)  # lists come back from JSON
        self.attn_resolutions = tuple(self.attn_resolutions)
        for name in ("in_channels", "out_channels", "ch", "num_res_blocks", "resolution", "groups"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not all(type(m) is int and m >= 1 for m in self.ch_mult):
            raise ValueError(f"ch_mult must hold positive integers, got {self.ch_mult}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        levels = len(self.ch_mult)
        if levels < 1 or self.num_res_blocks < 1:
            raise ValueError("ch_mult needs at least one level and num_res_blocks must be >= 1")
        if self.resolution % 2 ** (levels - 1):
            raise ValueError(
                f"resolution={self.resolution} must be divisible by 2**(levels - 1) = {2 ** (levels - 1)} "
                f"for ch_mult={self.ch_mult}"
            )
        sizes = self.level_resolutions
        bad = [r for r in self.attn_resolutions if r not in sizes]
        if bad:
            raise ValueError(f"attn_resolutions {bad} are not among this net's resolutions {sizes}")
        if self.ch % self.groups:
            raise ValueError(f"ch={self.ch} must be divisible by groups={self.groups} (GroupNorm)")

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        """The resolution of each level: ``resolution``, halved from one level to the next.

        Taught in chapter 08.
        """
        return tuple(self.resolution // 2**i for i in range(len(self.ch_mult)))


class UNet(nn.Module):
    """The DDPM U-Net: x (B, C, H, W), t (B,) -> (B, out_channels, H, W).

    ``UNet(UNetConfig(...))``, ``UNet(ch=64, ...)``, ``UNet({"ch": 64, ...})`` or
    ``UNet(config, dropout=0.0)`` (a copy of config with dropout replaced).

    Taught in chapter 08.
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        if isinstance(config, dict):
            config = UNetConfig(**config)
        config = config or UNetConfig()
        self.config = c = replace(config, **kwargs) if kwargs else replace(config)
        temb_ch = 4 * c.ch
        block = lambda i, o: ResnetBlock(i, o, temb_ch, c.dropout, c.groups)  # noqa: E731
        attn = lambda ch, res: AttnBlock(ch, c.groups) if res in c.attn_resolutions else nn.Identity()  # noqa: E731

        self.temb = nn.Sequential(nn.Linear(c.ch, temb_ch), nn.SiLU(), nn.Linear(temb_ch, temb_ch))
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)

        skips = [c.ch]  # channels of every activation the down path hands to the up path
        ch = c.ch
        self.down = nn.ModuleList()
        for i, res in enumerate(c.level_resolutions):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(c.num_res_blocks):
                level.block.append(block(ch, c.ch * c.ch_mult[i]))
                ch = c.ch * c.ch_mult[i]
                level.attn.append(attn(ch, res))
                skips.append(ch)
            if i != len(c.ch_mult) - 1:
                level.downsample = Downsample(ch)
                skips.append(ch)
            self.down.append(level)

        self.mid = nn.Module()
        self.mid.block_1 = block(ch, ch)
        self.mid.attn_1 = AttnBlock(ch, c.groups)
        self.mid.block_2 = block(ch, ch)

        up = []
        for i, res in reversed(list(enumerate(c.level_resolutions))):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                level.block.append(block(ch + skips.pop(), c.ch * c.ch_mult[i]))
                ch = c.ch * c.ch_mult[i]
                level.attn.append(attn(ch, res))
            if i != 0:
                level.upsample = Upsample(ch)
            up.insert(0, level)  # self.up[i] is level i, as self.down[i]
        self.up = nn.ModuleList(up)
        assert not skips

        self.norm_out = Normalize(ch, c.groups)
        self.conv_out = nn.Conv2d(ch, c.out_channels, 3, padding=1)
        self._init_weights()

    def _init_weights(self):
        # DDPM's default_init: variance_scaling(1, fan_avg, uniform), i.e. Xavier uniform, with
        # zero biases; init_scale=0. (here exactly zero) on the second conv of every res block,
        # on proj_out of every attention block and on conv_out, so each block starts as identity.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResnetBlock):
                zero_module(m.conv2)
            elif isinstance(m, AttnBlock):
                zero_module(m.proj_out)
        zero_module(self.conv_out)

    # presets ------------------------------------------------------------------

    @classmethod
    def ddpm_cifar10(cls, learn_sigma: bool = False, **overrides) -> "UNet":
        """The paper's CIFAR-10 network: 35,746,307 parameters (with ``learn_sigma``, 6 output channels).

        Taught in chapter 08.
        """
        c = UNetConfig(out_channels=6 if learn_sigma else 3)
        return cls(c, **overrides)

    FASHION_MNIST_SIZES = {
        "tiny": dict(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,), groups=8),
        "small": dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,), groups=8),
        "base": dict(ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(14,), groups=32),
    }

    @classmethod
    def fashion_mnist(cls, size: str = "small", learn_sigma: bool = False, **overrides) -> "UNet":
        """Nets for images of shape (1, 28, 28), with 3 levels (28 -> 14 -> 7); sizes: tiny, small, base.

        Taught in chapter 08.
        """
        if size not in cls.FASHION_MNIST_SIZES:
            raise ValueError(f"size must be one of {sorted(cls.FASHION_MNIST_SIZES)}, got {size!r}")
        c = UNetConfig(
            in_channels=1,
            out_channels=2 if learn_sigma else 1,
            resolution=28,
            dropout=0.1,
            **cls.FASHION_MNIST_SIZES[size],
        )
        return cls(c, **overrides)

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> "UNet":
        """The UNet that a :class:`UNetConfig` (or its dict) describes.

        Taught in chapter 08.
        """
        return cls(config) if isinstance(config, UNetConfig) else cls(**config)

    # forward ------------------------------------------------------------------

    def _check_inputs(self, x, t):
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a 4-D tensor (B, C, H, W), got {shape}")
        if x.shape[1] != c.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels, this UNet expects in_channels={c.in_channels}")
        if x.shape[2] != c.resolution or x.shape[3] != c.resolution:
            raise ValueError(
                f"x is {x.shape[2]}x{x.shape[3]}, this UNet was built for resolution={c.resolution} "
                f"({c.resolution}x{c.resolution}, halved {len(c.ch_mult) - 1} times)"
            )
        _check_t(t, x.shape[0])

    # Memory format of the activations (a speed setting only: same shapes, same values up to float
    # rounding; the output is always returned NCHW-contiguous). True: channels_last (NHWC strides),
    # the layout tensor-core convolutions want, and attention then reads its tokens without a copy.
    # False: the default NCHW. None (default): channels_last on CUDA only. On CPU, PyTorch's
    # channels_last GroupNorm is several times slower than its NCHW kernel for the few channels per
    # group of these nets, which cancels or outweighs what oneDNN's convolutions gain; True can
    # still pay off there for inference of wider nets (benchmarks/RESULTS.md).
    channels_last: bool | None = None

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output for x (B, C, H, W) and timesteps t (B,): (B, out_channels, H, W).

        The output is NCHW-contiguous whatever :attr:`channels_last` says.

        Taught in chapter 08.
        """
        self._check_inputs(x, t)
        temb = self.temb(timestep_embedding(t, self.config.ch).to(x.dtype))

        if self.channels_last or (self.channels_last is None and x.is_cuda):
            x = x.contiguous(memory_format=torch.channels_last)
            hs = [self.conv_in(x).contiguous(memory_format=torch.channels_last)]
        else:
            hs = [self.conv_in(x)]
        for level in self.down:
            for block, attn in zip(level.block, level.attn):
                hs.append(attn(block(hs[-1], temb)))
            if hasattr(level, "downsample"):
                hs.append(level.downsample(hs[-1]))

        h = hs[-1]
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, temb)), temb)

        for level in reversed(self.up):
            for block, attn in zip(level.block, level.attn):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), temb))
            if hasattr(level, "upsample"):
                h = level.upsample(h)

        return self.conv_out(F.silu(self.norm_out(h), inplace=True)).contiguous()


# -----------------------------------------------------------------------------
# the Fashion-MNIST classifier (features of the Frechet classifier distance; trained by ddpm_lib.classifier)


@dataclass
class ClassifierConfig:
    """The Fashion-MNIST classifier's hyperparameters: conv blocks' channels, feature width, classes, dropout.

    Taught in chapter 10.
    """

    in_channels: int = 1
    resolution: int = 28
    channels: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.2

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # lists come back from JSON
        if not self.channels:
            raise ValueError("channels needs at least one conv block")
        if self.resolution // 2 ** len(self.channels) < 1:
            raise ValueError(
                f"resolution={self.resolution} is too small for {len(self.channels)} 2x2 poolings"
            )


class FashionClassifier(nn.Module):
    """x (B, 1, 28, 28) in [-1, 1] -> logits (B, 10); :meth:`features` gives the 128-d penultimate layer.

    Those features give the Fréchet classifier distance (FCD) of :mod:`ddpm_lib.evaluate`;
    :mod:`ddpm_lib.classifier` trains the network. ``FashionClassifier()``,
    ``FashionClassifier(channels=(16, 32), ...)`` or ``FashionClassifier(ClassifierConfig(...))``.

    Taught in chapter 10.
    """

    def __init__(self, config: ClassifierConfig | dict | None = None, **kwargs):
        super().__init__()
        if isinstance(config, dict):
            config = ClassifierConfig(**config)
        base = config or ClassifierConfig()
        if kwargs:
            base = replace(base, **kwargs)
        else:
            base = ClassifierConfig(**{k: getattr(base, k) for k in base.__dataclass_fields__})
        self.config = c = base
        blocks, ch, res = [], c.in_channels, c.resolution
        for out in c.channels:
            blocks += [
                nn.Conv2d(ch, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            ch, res = out, res // 2
        self.conv = nn.Sequential(*blocks)
        self.fc = nn.Linear(ch * res * res, c.feature_dim)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if (
            not isinstance(x, torch.Tensor)
            or x.ndim != 4
            or x.shape[1:] != (c.in_channels, c.resolution, c.resolution)
        ):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must have shape (B, {c.in_channels}, {c.resolution}, {c.resolution}), got {shape}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations: (B, feature_dim), after the ReLU of the fully connected layer.

        Taught in chapter 10.
        """
        self._check(x)
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits, (B, num_classes), for x (B, in_channels, resolution, resolution).

        Taught in chapter 10.
        """
        return self.head(self.drop(self.features(x)))
