"""Larsson, Maire & Shakhnarovich, "Learning Representations for Automatic Colorization" (ECCV 2016) as a
transformers model: a VGG-16 trunk on the L channel, a hypercolumn per pixel (several layers' activations,
bilinearly upsampled to the pixel and concatenated), a hidden layer `h_fc1` and per-pixel histograms over
a and b (Lab) or over hue and chroma (the paper's HSV-cone variant).

Training computes hypercolumns only at `config.sample_pixels` random pixels per image (sparse training);
inference is dense. Because bilinear upsampling and `h_fc1` are both linear, `h_fc1` of the concatenated
upsampled layers equals the sum of each layer's own projection, upsampled: dense inference projects each
layer at the smaller of its own and the output resolution, so the 4096-channel fc layers are never
upsampled. This file travels to the Hub as remote code: it imports only its siblings, transformers and torch.
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .configuration_colorization import DECODE_MODES
from .configuration_hypercolumn import HYPERCOLUMN_LAYERS, VGG16_BLOCK_CHANNELS, VGG16_BLOCK_DEPTHS, HypercolumnConfig
from .image_processing_colorization import lab_to_rgb, lab_to_rgb_unclipped, rgb_to_lab
from .modeling_colorization import ColorizationPreTrainedModel, decode_ab

L_CENT, L_NORM = 50.0, 100.0  # the image processor's normalization: pixel_values = (L - 50) / 100


# --------------------------------------------------------------------------------------------------
# Bins
# --------------------------------------------------------------------------------------------------
def gaussian_quantile_bins(num_bins: int, sigma: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bins at evenly spaced quantiles of N(0, sigma): `(edges (K - 1,), centres (K,))`; bin k holds the
    values between its quantiles k/K and (k+1)/K, its centre is the quantile (k + 1/2)/K."""
    q_edges = torch.arange(1, num_bins, dtype=torch.float64) / num_bins
    q_centres = (torch.arange(num_bins, dtype=torch.float64) + 0.5) / num_bins
    to_value = lambda q: (sigma * math.sqrt(2.0) * torch.erfinv(2.0 * q - 1.0)).float()  # noqa: E731
    return to_value(q_edges), to_value(q_centres)


def uniform_bins(num_bins: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bins of equal width on [0, 1]: `(edges (K - 1,), centres (K,))`."""
    edges = torch.arange(1, num_bins, dtype=torch.float32) / num_bins
    return edges, (torch.arange(num_bins, dtype=torch.float32) + 0.5) / num_bins


# --------------------------------------------------------------------------------------------------
# The hue/chroma colour space: HSV's cone with HSL's lightness passed through (V = L + C/2)
# --------------------------------------------------------------------------------------------------
def rgb_to_hue_chroma(rgb: torch.Tensor):
    """sRGB in [0, 1] `(..., 3, H, W)` -> `(hue, chroma, lightness)`, each `(..., H, W)` in [0, 1]: chroma
    C = max - min, lightness L = (max + min) / 2 (so V = max = L + C/2), hue the HSV hexcone angle / 360
    (0 for gray pixels, where it is undefined)."""
    r, g, b = rgb.unbind(-3)
    v, _ = rgb.max(dim=-3)
    m, _ = rgb.min(dim=-3)
    c = v - m
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(v == r, ((g - b) / safe) % 6.0, torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = torch.where(c > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return hue, c, (v + m) / 2.0


def hue_chroma_to_rgb(hue: torch.Tensor, chroma: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
    """`(hue, chroma, lightness)` `(..., H, W)` -> sRGB `(..., 3, H, W)`; chroma is limited to what fits at
    that lightness (C <= 2 min(L, 1 - L)), so the lightness is kept."""
    lightness = lightness.clamp(0.0, 1.0)
    c = torch.minimum(chroma.clamp(min=0.0), 2.0 * torch.minimum(lightness, 1.0 - lightness))
    h6 = (hue % 1.0) * 6.0
    # HSV hexcone: each channel is V - C * clamp(min(k, 4 - k), 0, 1) with k = (n + H') mod 6
    channels = [(n + h6) % 6.0 for n in (5.0, 3.0, 1.0)]
    v = lightness + c / 2.0
    return torch.stack([v - c * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0) for k in channels], dim=-3)


def gray_level(lightness_cie: torch.Tensor) -> torch.Tensor:
    """CIE L `(..., 1, H, W)` -> the sRGB value in [0, 1] of the gray with that L `(..., H, W)`: the HSL
    lightness a gray photo's pixel has."""
    lab = torch.cat([lightness_cie, torch.zeros_like(lightness_cie), torch.zeros_like(lightness_cie)], dim=-3)
    return lab_to_rgb_unclipped(lab)[..., 1, :, :].clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Decoding histograms
# --------------------------------------------------------------------------------------------------
def decode_histogram(logits: torch.Tensor, centres: torch.Tensor, mode: str = "mean", temperature: float = 0.38,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One histogram per pixel, logits `(B, K, h, w)` over bins with sorted `centres` `(K,)` -> a value
    `(B, h, w)`: "mean" (expectation), "annealed_mean" (expectation of softmax(logits / T)), "mode" (the
    likeliest bin's centre), "median" (the centre where the CDF reaches 1/2), "sample" (a bin drawn from
    softmax(logits / T))."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    centres = centres.to(logits.device, torch.float32)
    logits = logits.float()
    if mode == "mode":
        return centres[logits.argmax(dim=1)]
    t = float(temperature) if mode in ("annealed_mean", "sample") else 1.0
    probs = torch.softmax(logits / t, dim=1)
    if mode == "sample":
        b, k, h, w = probs.shape
        idx = torch.multinomial(probs.permute(0, 2, 3, 1).reshape(-1, k), 1, generator=generator)
        return centres[idx.view(b, h, w)]
    if mode == "median":
        idx = (probs.cumsum(dim=1) < 0.5).sum(dim=1).clamp(max=len(centres) - 1)
        return centres[idx]
    return torch.einsum("bkhw,k->bhw", probs, centres)


def circular_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float = 1.0):
    """Hue histogram logits `(B, K, h, w)` over hue centres in [0, 1) -> `(hue (B, h, w), |z| (B, h, w))`,
    z the complex mean of softmax(logits / T) on the unit circle: |z| ~ 1 for a confident hue, ~ 0 for a
    uniform one."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    angle = 2.0 * math.pi * centres.to(logits.device, torch.float32)
    re = torch.einsum("bkhw,k->bhw", probs, torch.cos(angle))
    im = torch.einsum("bkhw,k->bhw", probs, torch.sin(angle))
    return (torch.atan2(im, re) / (2.0 * math.pi)) % 1.0, (re * re + im * im).sqrt()  # not hypot: ONNX lacks it


def chromatic_fading_scale(confidence: torch.Tensor, eta: float = 0.03) -> torch.Tensor:
    """The paper's chromatic fading: chroma is multiplied by min(|z| / eta, 1), so a pixel whose hue is
    uncertain (|z| small) fades towards gray instead of taking a wrong vivid hue."""
    return (confidence / eta).clamp(max=1.0)


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------
@dataclass
class HypercolumnColorizationOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the paper's KL loss (cross-entropy of the
            one-hot targets), returned when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_logits, height / s, width / s)`): every
            head's histogram logits, concatenated in `config.head_sizes` order (s = `config.output_stride`);
            in sparse training `(batch_size, num_logits, sample_pixels, 1)`, at `sampled_points`.
        head_logits (`dict[str, torch.FloatTensor]`): the same logits split per head ("a", "b"; "ab" for
            the joint Lab histogram; "hue", "chroma").
        ab (`torch.FloatTensor` of shape `(batch_size, 2, height / s, width / s)`, *optional*): decoded a
            and b in Lab units; None when `forward(decode=False)` (the default when `labels` are given).
        sampled_points (`torch.LongTensor` of shape `(batch_size, sample_pixels, 2)`, *optional*): the (x, y)
            input pixels of sparse training.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    head_logits: Optional[Dict[str, torch.FloatTensor]] = None
    ab: Optional[torch.FloatTensor] = None
    sampled_points: Optional[torch.LongTensor] = None


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------
def _conv_names():
    """VGG-16's 13 convolutions as (name, block index): conv1_1, conv1_2, conv2_1, ..., conv5_3."""
    return [(f"conv{b + 1}_{i + 1}", b) for b, depth in enumerate(VGG16_BLOCK_DEPTHS) for i in range(depth)]


class HypercolumnPreTrainedModel(ColorizationPreTrainedModel):
    config_class = HypercolumnConfig
    base_model_prefix = "hypercolumn"

    def _init_weights(self, module):
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=1e-3)  # near-uniform histograms at the start: a loss of ~log K per head
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            super()._init_weights(module)
        elif isinstance(module, HypercolumnColorizationModel):
            with torch.no_grad():
                module.h_fc1_bias.zero_()
                for name, value in module.bin_tables().items():  # non-persistent: rebuilt from the config
                    getattr(module, name).copy_(value)


class HypercolumnColorizationModel(HypercolumnPreTrainedModel):
    """Hypercolumn colorization network (Larsson et al., ECCV 2016).

    Input `pixel_values` `(B, 1, H, W)`: the normalized L channel, (L - 50) / 100 (the same
    `ColorizationImageProcessor` as the ECCV16 family). Output [`HypercolumnColorizationOutput`] with
    per-head histogram logits `(B, K, H/s, W/s)`, the decoded `ab` `(B, 2, H/s, W/s)` and, given ab
    `labels` `(B, 2, H, W)`, the training `loss` (in training mode from `config.sample_pixels` random
    pixels per image).
    """

    def __init__(self, config: HypercolumnConfig):
        super().__init__(config)
        layers = config.hypercolumn_layers
        deepest = HYPERCOLUMN_LAYERS.index(layers[-1])
        channels = config.layer_channels()
        self.convs, self.norms = nn.ModuleDict(), nn.ModuleDict()
        cin = 1
        for name, block in _conv_names():
            if block > deepest:
                break  # the trunk stops after the deepest hypercolumn layer (block b ends in HYPERCOLUMN_LAYERS[b])
            cout = config.scaled(VGG16_BLOCK_CHANNELS[block])
            self.convs[name] = nn.Conv2d(cin, cout, 3, padding=1)
            if config.norm_type == "batch":
                self.norms[name] = nn.BatchNorm2d(cout)
            elif config.norm_type == "group":
                self.norms[name] = nn.GroupNorm(min(config.num_groups, cout), cout)
            cin = cout
        self.fc6 = self.fc7 = None
        if deepest >= HYPERCOLUMN_LAYERS.index("fc6"):
            k = config.fc6_kernel_size
            self.fc6 = nn.Conv2d(cin, channels["fc6"], k, padding=k // 2)
        if deepest >= HYPERCOLUMN_LAYERS.index("fc7"):
            self.fc7 = nn.Conv2d(channels["fc6"], channels["fc7"], 1)
        # h_fc1 over the concatenated hypercolumn, stored as one 1x1 projection per layer plus one bias
        self.h_fc1 = nn.ModuleDict({name: nn.Conv2d(channels[name], config.hidden_size, 1, bias=False) for name in layers})
        self.h_fc1_bias = nn.Parameter(torch.zeros(config.hidden_size))
        self.classifier = nn.Conv2d(config.hidden_size, sum(config.head_sizes.values()), 1)
        for name, value in self.bin_tables().items():
            self.register_buffer(name, value, persistent=False)
        self.post_init()

    @property
    def decode_needs_input(self) -> bool:
        """Hue/chroma decoding converts colours at the input's lightness: the Colorizer passes `pixel_values`."""
        return self.config.color_space == "hue-chroma"

    def bin_tables(self) -> dict:
        """Bin edges and centres of the heads, derived from the config (never stored with the weights)."""
        cfg = self.config
        if cfg.color_space == "hue-chroma":
            edges, centres = uniform_bins(cfg.num_bins)
        else:
            edges, centres = gaussian_quantile_bins(cfg.joint_bins if cfg.lab_histogram == "joint" else cfg.num_bins,
                                                    cfg.lab_sigma)
        return {"bin_edges": edges, "bin_centres": centres}

    # -- trunk and hypercolumns ---------------------------------------------------------------------
    def features(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The activations (after ReLU) of `config.hypercolumn_layers`, each at its own resolution."""
        wanted, out = set(self.config.hypercolumn_layers), {}
        hidden = pixel_values
        for name, block in _conv_names():
            if name not in self.convs:
                break
            if name.endswith("_1") and block > 0:
                hidden = F.max_pool2d(hidden, 2)
            hidden = self.convs[name](hidden)
            if name in self.norms:
                hidden = self.norms[name](hidden)
            hidden = F.relu(hidden)
            if name in wanted:
                out[name] = hidden
        if self.fc6 is not None:
            hidden = F.relu(self.fc6(F.max_pool2d(hidden, 2)))
            out["fc6"] = hidden
            if self.fc7 is not None:
                out["fc7"] = F.relu(self.fc7(hidden))
        return out

    @staticmethod
    def _grid(points: torch.Tensor, size) -> torch.Tensor:
        """(x, y) input pixels `(B, N, 2)` -> grid_sample coordinates `(B, N, 1, 2)`. With
        align_corners=False a pixel's normalized position is the same on every layer, and bilinear
        sampling there equals `F.interpolate(..., mode="bilinear")` to the input size."""
        h, w = size
        scale = torch.tensor([2.0 / w, 2.0 / h], device=points.device)
        return ((points.float() + 0.5) * scale - 1.0)[:, :, None, :]

    def hypercolumns(self, features: Dict[str, torch.Tensor], points: torch.Tensor, size) -> torch.Tensor:
        """The hypercolumns `(B, N, D)` at (x, y) input pixels `points` `(B, N, 2)` of an input of `size`
        (H, W): every layer bilinearly sampled there, concatenated in layer order."""
        grid = self._grid(points, size)
        cols = [F.grid_sample(features[name], grid, mode="bilinear", padding_mode="border", align_corners=False)
                for name in self.config.hypercolumn_layers]
        return torch.cat(cols, dim=1)[..., 0].transpose(1, 2)

    def dense_hypercolumns(self, features: Dict[str, torch.Tensor], size) -> torch.Tensor:
        """Every layer upsampled (bilinear) to `size` and concatenated: `(B, D, h, w)`. For inspection and
        tests; inference uses `dense_hidden`, which never builds this tensor."""
        return torch.cat([F.interpolate(features[name], size=size, mode="bilinear", align_corners=False)
                          for name in self.config.hypercolumn_layers], dim=1)

    def sparse_hidden(self, features: Dict[str, torch.Tensor], points: torch.Tensor, size) -> torch.Tensor:
        """`h_fc1` (after ReLU) at `points`: `(B, hidden, N, 1)`."""
        grid = self._grid(points, size)
        total = sum(self.h_fc1[name](F.grid_sample(features[name], grid, mode="bilinear", padding_mode="border",
                                                   align_corners=False)) for name in self.config.hypercolumn_layers)
        return F.relu(total + self.h_fc1_bias.view(1, -1, 1, 1))

    def dense_hidden(self, features: Dict[str, torch.Tensor], size) -> torch.Tensor:
        """`h_fc1` (after ReLU) on the whole `size` grid `(B, hidden, h, w)`; each layer is projected at the
        smaller of its own and the output resolution (exact: projection and bilinear upsampling commute)."""
        total = 0
        for name in self.config.hypercolumn_layers:
            feat, proj = features[name], self.h_fc1[name]
            if feat.shape[-2] * feat.shape[-1] > size[0] * size[1]:
                total = total + proj(F.interpolate(feat, size=size, mode="bilinear", align_corners=False))
            else:
                total = total + F.interpolate(proj(feat), size=size, mode="bilinear", align_corners=False)
        return F.relu(total + self.h_fc1_bias.view(1, -1, 1, 1))

    def split_heads(self, logits: torch.Tensor) -> Dict[str, torch.Tensor]:
        return dict(zip(self.config.head_sizes, logits.split(list(self.config.head_sizes.values()), dim=1)))

    # -- targets and loss ---------------------------------------------------------------------------
    def targets(self, lightness: torch.Tensor, ab: torch.Tensor) -> dict:
        """Ground truth `(B, 1, ...)` CIE L and `(B, 2, ...)` ab -> one-hot targets as bin indices per head
        (and, for hue/chroma, the true chroma that weights the hue loss)."""
        edges = self.bin_edges
        if self.config.color_space == "hue-chroma":
            rgb = lab_to_rgb(torch.cat([lightness, ab], dim=1).float(), preserve_lightness=False)
            hue, chroma, _ = rgb_to_hue_chroma(rgb)
            return {"hue": torch.bucketize(hue.contiguous(), edges), "chroma": torch.bucketize(chroma.contiguous(), edges),
                    "true_chroma": chroma}
        a_idx, b_idx = (torch.bucketize(ab[:, c].float().contiguous(), edges) for c in (0, 1))
        if self.config.lab_histogram == "joint":
            return {"ab": a_idx * self.config.joint_bins + b_idx}
        return {"a": a_idx, "b": b_idx}

    def loss(self, head_logits: Dict[str, torch.Tensor], targets: dict) -> torch.Tensor:
        """The paper's loss, mean over pixels: KL(y || f) per histogram (= cross-entropy, y being one-hot);
        hue/chroma: KL(y_C || f_C) + lambda_H * y_C * KL(y_H || f_H), y_C the true chroma."""
        ce = {name: F.cross_entropy(logits.float(), targets[name], reduction="none") for name, logits in head_logits.items()}
        if self.config.color_space == "hue-chroma":
            return (ce["chroma"] + self.config.hue_weight * targets["true_chroma"] * ce["hue"]).mean()
        return sum(ce.values()).mean()

    # -- decoding -----------------------------------------------------------------------------------
    def decode(
        self,
        logits: torch.Tensor,
        temperature: Optional[float] = None,
        decode_mode: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
        pixel_values: Optional[torch.Tensor] = None,
        chromatic_fading: Optional[bool] = None,
        fading_eta: Optional[float] = None,
    ) -> torch.Tensor:
        """Histogram logits `(B, K, h, w)` -> ab `(B, 2, h, w)`, float32.

        Lab: `decode_mode` on a and b (marginals), or `decode_ab` on the joint histogram. Hue/chroma:
        `decode_mode` on chroma; hue on the circle (the circular expectation, annealed by T for
        "annealed_mean"; "mode" and "sample" as for any histogram; a median is not defined on a circle, so
        "median" takes the expectation, as the paper does); chromatic fading (default the config's) scales
        chroma by min(|z| / eta, 1). Hue/chroma needs the network input `pixel_values` `(B, 1, H, W)` for
        the lightness each colour is converted at.
        """
        cfg = self.config
        mode = decode_mode or cfg.decode_mode
        t = cfg.decode_temperature if temperature is None else temperature
        if cfg.color_space != "hue-chroma" and (chromatic_fading or fading_eta is not None):
            raise ValueError("chromatic fading applies to hue/chroma models only; this model predicts Lab histograms")
        with torch.no_grad():
            heads = self.split_heads(logits.detach().float())
            centres = self.bin_centres
            if cfg.color_space == "lab":
                if cfg.lab_histogram == "joint":
                    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1).reshape(-1, 2)
                    return decode_ab(heads["ab"], grid, mode=mode, temperature=t, generator=generator)
                return torch.stack([decode_histogram(heads[c], centres, mode, t, generator) for c in "ab"], dim=1)
            if pixel_values is None:
                raise ValueError("hue/chroma decoding needs the network input (pixel_values) for the lightness")
            chroma = decode_histogram(heads["chroma"], centres, mode, t, generator)
            hue, confidence = circular_mean(heads["hue"], centres, t if mode == "annealed_mean" else 1.0)
            if mode in ("mode", "sample"):
                hue = decode_histogram(heads["hue"], centres, mode, t, generator)
            if cfg.chromatic_fading if chromatic_fading is None else chromatic_fading:
                chroma = chroma * chromatic_fading_scale(confidence, cfg.fading_eta if fading_eta is None else fading_eta)
            lightness = F.adaptive_avg_pool2d(pixel_values.float() * L_NORM + L_CENT, hue.shape[-2:])
            rgb = hue_chroma_to_rgb(hue, chroma, gray_level(lightness))
            return rgb_to_lab(rgb)[:, 1:]

    # -- forward ------------------------------------------------------------------------------------
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
        points: Optional[torch.Tensor] = None,
        chromatic_fading: Optional[bool] = None,
        fading_eta: Optional[float] = None,
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 1, height, width)`): normalized L channel.
        labels (`torch.FloatTensor` of shape `(batch_size, 2, height, width)`, *optional*): ground-truth ab.
            In training mode the loss is computed at `config.sample_pixels` random pixels per image (or at
            `points`); in eval mode densely, on the output grid (ab area-averaged to it).
        points (`torch.LongTensor` of shape `(batch_size, N, 2)`, *optional*): (x, y) input pixels for sparse
            training instead of random ones.
        temperature, decode_mode, generator, chromatic_fading, fading_eta: decoding (see `decode`).
        decode (`bool`, *optional*): whether to decode `ab`; default only when no `labels` are given.
        original_sizes: the image processor's record of each photo's size, accepted and unused.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 1:
            raise ValueError(f"pixel_values must have shape (batch, 1, height, width), got {tuple(pixel_values.shape)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        size = tuple(pixel_values.shape[-2:])
        features = self.features(pixel_values)
        sparse = labels is not None and (self.training or points is not None)
        if sparse:
            if points is None:
                b, n = pixel_values.shape[0], self.config.sample_pixels
                points = torch.stack([torch.randint(0, size[1], (b, n), device=pixel_values.device),
                                      torch.randint(0, size[0], (b, n), device=pixel_values.device)], dim=-1)
            logits = self.classifier(self.sparse_hidden(features, points, size))
        else:
            stride = self.config.output_stride
            logits = self.classifier(self.dense_hidden(features, (size[0] // stride, size[1] // stride)))
        heads = self.split_heads(logits)

        loss = None
        if labels is not None:
            lightness = pixel_values.float() * L_NORM + L_CENT
            if sparse:  # the pixels' own colours (R = 1 in the paper's terms)
                index = (points[..., 1] * size[1] + points[..., 0])[:, None, :]
                pick = lambda x: torch.gather(x.flatten(2), 2, index.expand(-1, x.shape[1], -1))[..., None]  # noqa: E731
                lightness, ab = pick(lightness), pick(labels.float())
            else:
                lightness = F.adaptive_avg_pool2d(lightness, logits.shape[-2:])
                ab = F.adaptive_avg_pool2d(labels.float(), logits.shape[-2:])
            loss = self.loss(heads, self.targets(lightness, ab))

        ab_out = None
        if decode if decode is not None else labels is None:
            ab_out = self.decode(logits, temperature, decode_mode, generator, pixel_values=pixel_values,
                                 chromatic_fading=chromatic_fading, fading_eta=fading_eta)
        if not return_dict:
            return tuple(v for v in (loss, logits, ab_out) if v is not None)
        return HypercolumnColorizationOutput(loss=loss, logits=logits, head_logits=heads, ab=ab_out,
                                             sampled_points=points if sparse else None)


__all__ = [
    "HypercolumnColorizationModel",
    "HypercolumnColorizationOutput",
    "HypercolumnPreTrainedModel",
    "rgb_to_hue_chroma",
    "hue_chroma_to_rgb",
    "gaussian_quantile_bins",
    "uniform_bins",
    "decode_histogram",
    "circular_mean",
    "chromatic_fading_scale",
]
