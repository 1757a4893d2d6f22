"""Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016) as a transformers model.

The network maps the normalized L channel of CIE Lab to a distribution over Q quantized ab bins at
1/4 resolution; decoding turns that distribution into an ab map. Optional hint inputs (config
`hint_inputs`, `global_hints`) follow Zhang et al.'s SIGGRAPH 2017 user-guided network. This file
travels to the Hub as remote code: it imports only its sibling files, transformers, torch and the stdlib.
"""

import os
import shutil
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_colorization import DECODE_MODES, ColorizationConfig


# --------------------------------------------------------------------------------------------------
# Decoding: bin distribution -> ab
# --------------------------------------------------------------------------------------------------
def decode_ab(
    logits: torch.Tensor,
    ab_bins: torch.Tensor,
    mode: str = "annealed_mean",
    temperature: float = 0.38,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Decode bin logits `(B, Q, h, w)` into an ab map `(B, 2, h, w)` in Lab units.

    - "annealed_mean": mean of softmax(logits / T) (Zhang et al.; T -> 0 is the mode, T = 1 the mean);
    - "mode": centre of the most likely bin; "mean": expectation (T = 1);
    - "median": per-channel median of the marginal distributions of a and b (Larsson et al.);
    - "sample": one bin drawn per pixel from softmax(logits / T) (Larsson et al.).
    """
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    bins = ab_bins.to(device=logits.device, dtype=torch.float32)
    logits = logits.float()
    if mode == "mode":
        return bins[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    if mode in ("annealed_mean", "mean", "sample"):
        t = 1.0 if mode == "mean" else float(temperature)
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        probs = torch.softmax(logits / t, dim=1)
        if mode == "sample":
            b, q, h, w = probs.shape
            flat = probs.permute(0, 2, 3, 1).reshape(-1, q)
            idx = torch.multinomial(flat, 1, generator=generator).view(b, h, w)
            return bins[idx].permute(0, 3, 1, 2)
        with torch.autocast(logits.device.type, enabled=False):  # under mixed precision, einsum would run in bf16
            return torch.einsum("bqhw,qc->bchw", probs, bins)
    # median: sort the bins along each channel and walk the marginal CDF to 0.5
    probs = torch.softmax(logits, dim=1)
    out = []
    for c in range(2):
        values, order = torch.sort(bins[:, c])
        cdf = probs[:, order].cumsum(dim=1)
        idx = (cdf < 0.5).sum(dim=1).clamp(max=len(values) - 1)
        out.append(values[idx])
    return torch.stack(out, dim=1)


# --------------------------------------------------------------------------------------------------
# Targets and losses
# --------------------------------------------------------------------------------------------------
_CANDIDATES = {}  # (bins, k, grid) -> candidate table; bins rarely change, so the table is built once
_CELL = 4.0  # side of the ab grid cells of the candidate table
_SPAN = 32.0  # the table's grid bounds are the points' range rounded out to multiples of this


def _candidate_table(bins: torch.Tensor, k: int, lo: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """For each cell of a grid of `cells` (rows, cols) squares of side `_CELL` starting at `lo`, the bins
    that can be among the `k` nearest of any point in it, as a padded `(rows * cols, C)` index table
    (padding = Q, a sentinel bin at infinity). A bin qualifies when its distance to the cell is at most the
    k-th smallest farthest-corner distance: k bins lie within that of every point of the cell. Exact."""
    gy, gx = torch.meshgrid(torch.arange(int(cells[0]), device=bins.device), torch.arange(int(cells[1]), device=bins.device), indexing="ij")
    centres = (torch.stack((gy, gx), -1).reshape(-1, 2).float() + 0.5) * _CELL + lo
    off = (centres[:, None, :] - bins[None]).abs()  # (cells, Q, 2)
    far = (off + _CELL / 2).square().sum(-1)
    near = (off - _CELL / 2).clamp(min=0).square().sum(-1)
    mask = near <= far.kthvalue(k, dim=1, keepdim=True).values
    order = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, : int(mask.sum(1).max())]
    return torch.where(mask.gather(1, order), order, bins.shape[0])


def soft_encode(ab: torch.Tensor, ab_bins: torch.Tensor, neighbors: int = 5, sigma: float = 5.0):
    """Soft-encode ab values `(B, 2, h, w)` onto the bins: the `neighbors` nearest bin centres, weighted
    by a Gaussian of width `sigma` (Zhang et al. use 5 and 5) and normalized to sum to 1.

    Returns `(indices, weights)`, each `(B, k, h, w)`, nearest bin first. The dense target is
    `torch.zeros(B, Q, h, w).scatter_(1, indices, weights)` (see `soft_encode_dense`).
    Exact k-nearest search, but each pixel only measures the ~12 bins a grid table (built once per bin
    set) lists for its cell instead of all Q: ~10x faster than the all-pairs search for 313 bins.
    """
    b, _, h, w = ab.shape
    bins = ab_bins.to(device=ab.device, dtype=torch.float32)
    k = min(neighbors, bins.shape[0])
    with torch.autocast(ab.device.type, enabled=False):  # bf16 distances would pick the wrong neighbours
        x = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
        if not torch.isfinite(x).all():
            raise ValueError("soft_encode: ab contains NaN or infinite values")
        lo = torch.floor(x.min(0).values / _SPAN) * _SPAN
        cells = (torch.ceil((x.max(0).values + 1e-3) / _SPAN) * _SPAN - lo).div(_CELL).long()
        if int(cells[0]) * int(cells[1]) > 1 << 16:  # values far outside Lab's ab range: all bins are candidates
            cand = torch.arange(bins.shape[0], device=bins.device).expand(x.shape[0], -1)
        else:
            key = (str(bins.device), k, tuple(lo.tolist()), tuple(cells.tolist()), tuple(bins.flatten().tolist()))
            table = _CANDIDATES.get(key)
            if table is None:
                if len(_CANDIDATES) > 16:
                    _CANDIDATES.clear()
                table = _CANDIDATES[key] = _candidate_table(bins, k, lo, cells)
            cell = ((x - lo) / _CELL).floor().long().clamp(min=0)
            cand = table.index_select(0, cell[:, 0].clamp(max=int(cells[0]) - 1) * int(cells[1]) + cell[:, 1].clamp(max=int(cells[1]) - 1))
        far = torch.full((1,), float("inf"), device=bins.device)
        ca, cb = torch.cat((bins[:, 0], far)), torch.cat((bins[:, 1], far))
        # index_select on the flat index: ~4x cheaper on CPU than advanced indexing with a 2-D index
        flat = cand.flatten()
        d2 = (x[:, :1] - ca.index_select(0, flat).view_as(cand)).square_() + (x[:, 1:] - cb.index_select(0, flat).view_as(cand)).square_()  # (N, C)
        nd2, j = torch.topk(d2, k, dim=1, largest=False)
        idx = cand.gather(1, j)
        # subtracting the nearest distance leaves the normalized weights unchanged and avoids underflow
        wts = torch.exp(-(nd2 - nd2[:, :1]) / (2.0 * sigma**2))
        wts = wts / wts.sum(1, keepdim=True)
    return (idx.view(b, h, w, k).permute(0, 3, 1, 2), wts.view(b, h, w, k).permute(0, 3, 1, 2))


def soft_encode_dense(ab: torch.Tensor, ab_bins: torch.Tensor, neighbors: int = 5, sigma: float = 5.0):
    """Dense soft-encoded target `(B, Q, h, w)` whose entries sum to 1 over Q."""
    idx, wts = soft_encode(ab, ab_bins, neighbors, sigma)
    out = torch.zeros(ab.shape[0], ab_bins.shape[0], *ab.shape[2:], device=ab.device)
    return out.scatter_(1, idx, wts)


def smooth_prior(prior: torch.Tensor, ab_bins: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian-smooth a bin distribution `(Q,)` in the ab plane (each bin spreads its mass to the bin
    centres within ~sigma, the kernel rows normalized so total mass is kept)."""
    bins = ab_bins.double()
    if sigma <= 0:
        return prior / prior.sum()
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2.0 * sigma**2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    out = prior.double() @ kernel
    return (out / out.sum()).to(prior.dtype)


def rebalancing_weights(prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Class-rebalancing weights w ∝ ((1 - lam) * prior + lam / Q)^-1, scaled so E_prior[w] = 1."""
    p = prior.double() / prior.sum()
    w = 1.0 / ((1.0 - lam) * p + lam / p.numel())
    return (w / (p * w).sum()).to(prior.dtype)


def colorization_loss(
    logits: torch.Tensor,
    ab: torch.Tensor,
    ab_bins: torch.Tensor,
    class_weights: Optional[torch.Tensor] = None,
    neighbors: int = 5,
    sigma: float = 5.0,
    focal_gamma: float = 0.0,
    gray_chroma_threshold: float = 2.0,
) -> torch.Tensor:
    """Soft-encoded multinomial cross-entropy of Zhang et al.

    logits `(B, Q, h, w)`; ab targets `(B, 2, H, W)` in Lab units (area-downsampled to `h, w`).
    `class_weights` `(Q,)` rebalances by the nearest bin of each target pixel (None: plain CE).
    `focal_gamma > 0` multiplies each term by (1 - p)^gamma (focal loss). Images whose mean chroma is
    below `gray_chroma_threshold` carry no colour and are masked out; a batch of only gray images gives
    a zero loss that still backpropagates.
    """
    if ab.shape[-2:] != logits.shape[-2:]:
        ab = F.adaptive_avg_pool2d(ab.float(), logits.shape[-2:])
    idx, wts = soft_encode(ab, ab_bins, neighbors, sigma)
    logp = torch.log_softmax(logits.float(), dim=1)
    logp_k = torch.gather(logp, 1, idx)
    if focal_gamma > 0:
        logp_k = logp_k * (1.0 - logp_k.exp()).clamp(min=0) ** focal_gamma
    per_pixel = -(wts * logp_k).sum(1)  # (B, h, w)
    if class_weights is not None:
        per_pixel = per_pixel * class_weights.to(per_pixel.device, per_pixel.dtype)[idx[:, 0]]
    chroma = ab.float().pow(2).sum(1).sqrt().mean(dim=(1, 2))
    mask = (chroma >= gray_chroma_threshold).to(per_pixel.dtype)
    denom = mask.sum() * per_pixel.shape[1] * per_pixel.shape[2]
    return (per_pixel * mask[:, None, None]).sum() / denom.clamp(min=1.0)


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------
@dataclass
class ColorizationOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): soft-encoded (rebalanced) cross-entropy,
            returned when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_bins, height / 4, width / 4)`):
            unnormalized scores over the ab bins.
        ab (`torch.FloatTensor` of shape `(batch_size, 2, height / 4, width / 4)`, *optional*): the decoded a
            and b channels in Lab units (roughly -110..110); None when `forward(decode=False)` (the default
            when `labels` are given). Upsample and join with L to get an image (see
            `ColorizationImageProcessor.post_process_colorization`).
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    ab: Optional[torch.FloatTensor] = None


def _norm_layer(config: ColorizationConfig, channels: int) -> nn.Module:
    if config.norm_type == "batch":
        return nn.BatchNorm2d(channels)
    if config.norm_type == "group":
        return nn.GroupNorm(min(config.num_groups, channels), channels)
    return nn.Identity()


class ColorizationBlock(nn.Module):
    """`depth` 3x3 convolutions with ReLU, then a normalization (the last conv strided when `downsample`);
    the decoder block instead starts with a 4x4 stride-2 transposed convolution and has no norm.
    Layer indices match the original release's `modelN` Sequentials, so weights convert one to one."""

    def __init__(self, in_ch, out_ch, depth, dilation=1, downsample=False, upsample=False, norm=None):
        super().__init__()
        layers = []
        for i in range(depth):
            cin = in_ch if i == 0 else out_ch
            if upsample and i == 0:
                layers.append(nn.ConvTranspose2d(cin, out_ch, kernel_size=4, stride=2, padding=1))
            else:
                stride = 2 if downsample and i == depth - 1 else 1
                layers.append(nn.Conv2d(cin, out_ch, 3, stride=stride, padding=dilation, dilation=dilation))
            layers.append(nn.ReLU(inplace=True))
        if norm is not None:
            layers.append(norm)
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


# --------------------------------------------------------------------------------------------------
# Hint inputs (Zhang et al., SIGGRAPH 2017, "Real-Time User-Guided Image Colorization")
# --------------------------------------------------------------------------------------------------
AB_NORM = 110.0  # hint ab enter the network divided by this (the SIGGRAPH 2017 normalization)


class LocalHintEncoder(nn.Conv2d):
    """The local-hint half of the first convolution: the SIGGRAPH 2017 network convolves L, the ab hint
    map and the mask concatenated; convolution is linear in its input channels, so that is the L-only
    first convolution (kept as it was, `blocks.0.layers.0`) plus this bias-free convolution of
    (ab / 110, mask), added before the first ReLU. Zero-initialized (`_init_weights`): a grown model starts
    out exactly as the plain one, and a zero hint map adds exactly nothing (no bias)."""

    def __init__(self, first_conv: nn.Conv2d):
        super().__init__(3, first_conv.out_channels, first_conv.kernel_size, stride=first_conv.stride,
                         padding=first_conv.padding, dilation=first_conv.dilation, bias=False)

    def forward(self, hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
        """`hint_ab` `(B, 2, H, W)` in Lab units, `hint_mask` `(B, 1, H, W)` -> `(B, C1, H, W)`."""
        return super().forward(torch.cat((hint_ab / AB_NORM, hint_mask), dim=1))


# the weight-name prefixes of the hint layers (what `from_plain` adds; what training gives its own learning rate)
HINT_MODULE_PREFIXES = ("local_hints.", "local_hint_shortcut.", "global_hints.")


class LocalHintShortcut(nn.Conv2d):
    """Local hints at block 5's input: each 8x8 cell of the hint map becomes (mean hint ab / 110, 1) where
    it holds a hint and zeros where it holds none, then a 3x3 convolution to block 5's channels. The
    SIGGRAPH 2017 network has skip connections that carry hints to the output; this is the ECCV16 trunk's
    equivalent. The mean over the cell's hint pixels (not over all 64) keeps a 1-pixel hint as strong
    as a 9x9 patch. Zero-initialized and bias-free, like `LocalHintEncoder`."""

    def __init__(self, channels: int):
        super().__init__(3, channels, kernel_size=3, padding=1, bias=False)

    def forward(self, hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
        """`hint_ab` `(B, 2, H, W)`, `hint_mask` `(B, 1, H, W)` -> `(B, C, H / 8, W / 8)` (blocks 1-3 halve
        the size three times; a fixed pooling kernel also keeps the ONNX graph free of dynamic sizes)."""
        mass = F.avg_pool2d(hint_mask, 8)
        given = (mass > 0).to(hint_ab.dtype)
        mean_ab = F.avg_pool2d(hint_ab * hint_mask, 8) / mass.clamp_min(1e-6)
        return super().forward(torch.cat((mean_ab * given / AB_NORM, given), dim=1))


class ZeroInitLinear(nn.Linear):
    """A linear layer that `_init_weights` starts at zero (the global-hint branch's output layer)."""


class GlobalHintProjection(nn.Module):
    """Global hints: a colour distribution `(B, Q)` and its "given" flag (sum > 0) -> two linear layers
    (the SIGGRAPH 2017 global-hints branch uses 1x1 convolutions on a 1x1 map: the same thing) -> a
    per-channel offset `(B, C, 1, 1)` added to block 5's input. The offset is multiplied by the flag, so
    "no global hint" (all zeros) adds exactly nothing; the last layer starts at zero (a grown model is
    unchanged until trained)."""

    def __init__(self, num_bins: int, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(num_bins + 1, channels)
        self.fc2 = ZeroInitLinear(channels, channels)

    def forward(self, global_hint: torch.Tensor) -> torch.Tensor:
        """`global_hint` `(B, Q)` -> `(B, C, 1, 1)`."""
        given = (global_hint.sum(dim=1, keepdim=True) > 0).to(global_hint.dtype)
        hidden = F.relu(self.fc1(torch.cat((global_hint, given), dim=1)))
        return (self.fc2(hidden) * given)[:, :, None, None]


def hint_input_maps(points, height: int, width: int, device=None):
    """Local-hint inputs for one image from points `[(y, x, a, b), ...]` in network-input pixels (row,
    column; rounded down, must lie inside `height` x `width`) and Lab ab units: returns `hint_ab`
    `(1, 2, height, width)` and `hint_mask` `(1, 1, height, width)` (1 at each point; a later point at
    the same pixel wins). Stack them with `torch.cat` for a batch."""
    hint_ab = torch.zeros(1, 2, height, width, device=device)
    hint_mask = torch.zeros(1, 1, height, width, device=device)
    for i, (y, x, a, b) in enumerate(points):
        r, c = int(y), int(x)
        if not (0 <= r < height and 0 <= c < width):
            raise ValueError(f"hint {i}: ({y}, {x}) is outside the {width}x{height} network input")
        hint_ab[0, 0, r, c], hint_ab[0, 1, r, c] = float(a), float(b)
        hint_mask[0, 0, r, c] = 1.0
    return hint_ab, hint_mask


PIPELINE_TASK = "image-colorization"
_CUSTOM_PIPELINES = {
    PIPELINE_TASK: {"impl": "pipeline_colorization.ImageColorizationPipeline", "pt": ["AutoModel"], "tf": [], "type": "image"}
}


class ColorizationPreTrainedModel(PreTrainedModel):
    config_class = ColorizationConfig
    base_model_prefix = "colorization"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, failing clearly when config.ab_bins and the weights disagree."""
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except RuntimeError as err:
            if "mismatch" not in str(err):
                raise
            raise ValueError(
                f"{pretrained_model_name_or_path}: the weights do not fit the config (e.g. config.ab_bins has a "
                "different number of bins than the checkpoint's classifier); fix config.json or the weights"
            ) from None
        if isinstance(model, ColorizationModel):
            expected = torch.tensor(model.config.ab_bins, dtype=torch.float32)
            if not torch.allclose(model.ab_bins.float().cpu(), expected, atol=1e-4):
                raise ValueError(
                    f"{pretrained_model_name_or_path}: config.ab_bins differ from the bin centres stored with the "
                    "weights (ab_bins); the classifier's outputs would be decoded to the wrong colours"
                )
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus what `trust_remote_code` users need for the pipeline:
        `custom_pipelines` in config.json and the pipeline and image-processing files beside the model."""
        config = self.config
        previous = config.__dict__.get("custom_pipelines")
        # set only while saving: with the package installed the task is registered locally, and a
        # custom_pipelines entry in a live config would make pipeline() demand trust_remote_code
        config.custom_pipelines = _CUSTOM_PIPELINES
        try:
            out = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if previous is None:
                config.__dict__.pop("custom_pipelines", None)
            else:
                config.custom_pipelines = previous
        if kwargs.get("is_main_process", True):
            # Relative imports, not os.path.dirname(__file__): transformers copies a remote-code module's
            # relative imports into its cache, so a model loaded with trust_remote_code alone (no
            # pipeline or processor loaded) still has these files to save again.
            from .guidance_colorization import __file__ as guidance_file
            from .image_processing_colorization import __file__ as processing_file
            from .pipeline_colorization import __file__ as pipeline_file

            for source in (pipeline_file, processing_file, guidance_file):
                shutil.copyfile(source, os.path.join(save_directory, os.path.basename(source)))
        return out

    def _init_weights(self, module):
        # the hint inputs' entry layers start at zero (a grown model computes what the plain one did);
        # they are parameter-holding layers: transformers skips modules without parameters of their own
        if isinstance(module, (LocalHintEncoder, LocalHintShortcut, ZeroInitLinear)):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()
        elif isinstance(module, ColorizationModel):
            # buffers created on the meta device during from_pretrained must be refilled from the config
            with torch.no_grad():
                module.ab_bins.copy_(torch.tensor(self.config.ab_bins, dtype=torch.float32))
                module.bin_prior.fill_(1.0 / self.config.num_bins)


class ColorizationModel(ColorizationPreTrainedModel):
    """ECCV16 colorization network.

    Input `pixel_values` `(B, 1, H, W)`: the normalized L channel, (L - 50) / 100 (see
    `ColorizationImageProcessor`). Output [`ColorizationOutput`] with bin `logits` `(B, Q, H/4, W/4)`,
    the decoded `ab` `(B, 2, H/4, W/4)` and, given ab `labels` `(B, 2, H, W)`, the training `loss`.
    Buffers `ab_bins` `(Q, 2)` and `bin_prior` `(Q,)` (the smoothed empirical bin distribution that
    class rebalancing inverts) are saved with the weights.

    With `config.hint_inputs` the network also takes local hints (`hint_ab`, `hint_mask`: module
    `local_hints`, see `LocalHintEncoder`), with `config.global_hints` a colour distribution
    (`global_hint`: module `global_hints`, see `GlobalHintProjection`). Either may be left out (= no
    hints). `ColorizationModel.from_plain` grows a model without them into one with them.
    """

    def __init__(self, config: ColorizationConfig):
        super().__init__(config)
        ch = config.scaled_channels()
        depth, dil = config.block_depths, config.block_dilations
        blocks, cin = [], 1
        for i in range(8):
            blocks.append(
                ColorizationBlock(
                    cin, ch[i], depth[i], dilation=dil[i], downsample=i < 3, upsample=i == 7,
                    norm=_norm_layer(config, ch[i]) if i < 7 else None,
                )
            )
            cin = ch[i]
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(ch[7], config.num_bins, kernel_size=1)
        # created only when configured: a plain model's state dict (and outputs) are what they always were
        if config.hint_inputs:
            self.local_hints = LocalHintEncoder(self.blocks[0].layers[0])
            if config.hint_shortcut:
                self.local_hint_shortcut = LocalHintShortcut(ch[3])
        if config.global_hints:
            self.global_hints = GlobalHintProjection(config.num_bins, ch[3])
        self.register_buffer("ab_bins", torch.tensor(config.ab_bins, dtype=torch.float32), persistent=True)
        self.register_buffer("bin_prior", torch.full((config.num_bins,), 1.0 / config.num_bins), persistent=True)
        self.post_init()

    @classmethod
    def from_plain(cls, model: "ColorizationModel", hint_inputs: bool = True, global_hints: bool = True,
                   hint_shortcut: bool = True) -> "ColorizationModel":
        """Grow `model` into one with the hint inputs asked for (those it has are kept, with their weights):
        every existing weight and buffer is copied, the new hint modules start at zero, so the grown model's
        outputs equal `model`'s exactly until it is trained. Returns a new model (same dtype and device,
        same train/eval mode); `model` is not changed."""
        if not isinstance(model, ColorizationModel):
            raise TypeError(f"from_plain needs a ColorizationModel, got {type(model).__name__}")
        config = model.config.__class__.from_dict(model.config.to_dict())
        config.hint_inputs = bool(hint_inputs or model.config.hint_inputs)
        config.global_hints = bool(global_hints or model.config.global_hints)
        config.hint_shortcut = bool(config.hint_inputs and (hint_shortcut or getattr(model.config, "hint_shortcut", False)))
        param = next(model.parameters())
        grown = cls(config).to(device=param.device, dtype=param.dtype)
        missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
        if unexpected or any(not k.startswith(HINT_MODULE_PREFIXES) for k in missing):
            raise ValueError(f"cannot grow the model: weights do not match (missing {missing}, unexpected {unexpected})")
        return grown.train(model.training)

    # -- class rebalancing ------------------------------------------------------------------------
    def set_bin_prior(self, prior: torch.Tensor) -> None:
        """Store a (smoothed) empirical bin prior `(Q,)`; class rebalancing weights derive from it."""
        prior = torch.as_tensor(prior, dtype=torch.float32).flatten()
        if prior.numel() != self.config.num_bins:
            raise ValueError(f"bin prior has {prior.numel()} entries but the model has {self.config.num_bins} bins")
        if not torch.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
            raise ValueError("bin prior must be finite, non-negative and not all zero")
        with torch.no_grad():
            self.bin_prior.copy_(prior / prior.sum())

    def class_weights(self) -> torch.Tensor:
        """Rebalancing weights `(Q,)` from the stored prior (E_prior[w] = 1)."""
        return rebalancing_weights(self.bin_prior, self.config.rebalance_lambda)

    # -- decoding -----------------------------------------------------------------------------------
    def decode(
        self,
        logits: torch.Tensor,
        temperature: Optional[float] = None,
        decode_mode: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Bin logits `(B, Q, h, w)` -> ab `(B, 2, h, w)`, with the config's temperature and decode mode
        unless given (see `decode_ab`). Always float32, also under autocast."""
        with torch.no_grad():
            return decode_ab(
                logits.detach(), self.ab_bins,
                mode=decode_mode or self.config.decode_mode,
                temperature=self.config.decode_temperature if temperature is None else temperature,
                generator=generator,
            )

    # -- forward ------------------------------------------------------------------------------------
    def _hint_inputs(self, pixel_values, hint_ab, hint_mask, global_hint):
        """Check the hint tensors (one-line `ValueError`s) and encode them: the local hints' first-conv
        term `(B, C1, H, W)` and the global hint's block-5 offset `(B, C4, 1, 1)`, each None when absent."""
        cfg = self.config
        b, _, h, w = pixel_values.shape
        local = offset = None
        if hint_ab is not None or hint_mask is not None:
            if not cfg.hint_inputs:
                name = "hint_ab" if hint_ab is not None else "hint_mask"
                raise ValueError(f"{name}: this model has no local hint inputs (config.hint_inputs is false); "
                                 "use a hint-trained model or the training-free guidance")
            if hint_ab is None or hint_mask is None:
                raise ValueError("hint_ab and hint_mask go together: give both or neither")
            for name, value, channels in (("hint_ab", hint_ab, 2), ("hint_mask", hint_mask, 1)):
                if value.dim() != 4 or tuple(value.shape) != (b, channels, h, w):
                    raise ValueError(f"{name} must have shape ({b}, {channels}, {h}, {w}) like pixel_values, "
                                     f"got {tuple(value.shape)}")
            dtype = pixel_values.dtype
            local = self.local_hints(hint_ab.to(dtype), hint_mask.to(dtype))
        if global_hint is not None:
            if not cfg.global_hints:
                raise ValueError("global_hint: this model has no global hint input (config.global_hints is false); "
                                 "use a hint-trained model or the training-free reference guidance")
            if global_hint.dim() != 2 or tuple(global_hint.shape) != (b, cfg.num_bins):
                raise ValueError(f"global_hint must have shape ({b}, {cfg.num_bins}) (batch, bins), "
                                 f"got {tuple(global_hint.shape)}")
            offset = self.global_hints(global_hint.to(pixel_values.dtype))
        return local, offset

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        temperature: Optional[float] = None,
        decode_mode: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
        decode: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        original_sizes: Optional[list] = None,
        hint_ab: Optional[torch.Tensor] = None,
        hint_mask: Optional[torch.Tensor] = None,
        global_hint: Optional[torch.Tensor] = None,
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 1, height, width)`):
            normalized L channel; height and width should be multiples of 8.
        hint_ab (`torch.FloatTensor` of shape `(batch_size, 2, height, width)`, *optional*): local hints'
            ab in Lab units (0 where there is none), at the network input's resolution; needs
            `config.hint_inputs` and comes with `hint_mask`.
        hint_mask (`torch.FloatTensor` of shape `(batch_size, 1, height, width)`, *optional*): 1 where
            `hint_ab` holds a hint, 0 elsewhere.
        global_hint (`torch.FloatTensor` of shape `(batch_size, num_bins)`, *optional*): a colour
            distribution over the model's bins (sums to 1), or all zeros for "no global hint" (per image);
            needs `config.global_hints`. Left out: no hints of that kind (the model works without them).
        labels (`torch.FloatTensor` of shape `(batch_size, 2, height, width)`, *optional*):
            ground-truth ab channels in Lab units.
        temperature (`float`, *optional*): annealed-mean temperature; default `config.decode_temperature`.
        decode_mode (`str`, *optional*): default `config.decode_mode`.
        decode (`bool`, *optional*): whether to decode `ab` from the logits; default: only when no
            `labels` are given (training needs just the loss, video and ONNX decode the logits themselves).
        original_sizes (`list[tuple[int, int]]`, *optional*): the image processor's record of each photo's
            `(height, width)`, accepted so `model(**processor(images))` works; the network does not need it.
        Any other keyword raises `TypeError`.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 1:
            raise ValueError(f"pixel_values must have shape (batch, 1, height, width), got {tuple(pixel_values.shape)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        local, global_offset = self._hint_inputs(pixel_values, hint_ab, hint_mask, global_hint)
        hidden = pixel_values
        for i, block in enumerate(self.blocks):
            if i == 0 and local is not None:
                first = block.layers[0](hidden) + local  # = the first conv of (L, hint ab, mask) concatenated
                hidden = block.layers[1:](first)
            else:
                if i == 4 and global_offset is not None:
                    hidden = hidden + global_offset
                if i == 4 and local is not None and hasattr(self, "local_hint_shortcut"):
                    hidden = hidden + self.local_hint_shortcut(hint_ab.to(hidden.dtype), hint_mask.to(hidden.dtype))
                hidden = block(hidden)
        logits = self.classifier(hidden)

        loss = None
        if labels is not None:
            cfg = self.config
            loss = colorization_loss(
                logits, labels, self.ab_bins,
                class_weights=self.class_weights() if cfg.loss_type == "rebalanced_ce" else None,
                neighbors=cfg.soft_encode_neighbors, sigma=cfg.soft_encode_sigma,
                focal_gamma=cfg.focal_gamma if cfg.loss_type == "focal" else 0.0,
                gray_chroma_threshold=cfg.gray_chroma_threshold,
            )
        ab = None
        if decode if decode is not None else labels is None:
            ab = self.decode(logits, temperature=temperature, decode_mode=decode_mode, generator=generator)
        if not return_dict:
            return tuple(v for v in (loss, logits, ab) if v is not None)
        return ColorizationOutput(loss=loss, logits=logits, ab=ab)


__all__ = [
    "ColorizationModel",
    "ColorizationPreTrainedModel",
    "ColorizationOutput",
    "GlobalHintProjection",
    "LocalHintEncoder",
    "LocalHintShortcut",
    "HINT_MODULE_PREFIXES",
    "hint_input_maps",
    "decode_ab",
    "soft_encode",
    "soft_encode_dense",
    "smooth_prior",
    "rebalancing_weights",
    "colorization_loss",
]
