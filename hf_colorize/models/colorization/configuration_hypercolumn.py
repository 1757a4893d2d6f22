"""Configuration of Larsson, Maire & Shakhnarovich's hypercolumn colorizer ("Learning Representations for
Automatic Colorization", ECCV 2016), the second model family of hf-colorize.

This file travels to the Hub as remote code: it imports only transformers, its sibling configuration
file and the standard library.
"""

import math

from transformers import PretrainedConfig

from .configuration_colorization import DECODE_MODES, NORM_TYPES

#: VGG-16's layers that can feed the hypercolumn, in network order, with their stride (input pixels per
#: feature cell). conv1_1 ... conv5_3 are the 13 convolutions; fc6 and fc7 run as convolutions on pool5.
HYPERCOLUMN_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc6", "fc7")
LAYER_STRIDES = {"conv1_2": 1, "conv2_2": 2, "conv3_3": 4, "conv4_3": 8, "conv5_3": 16, "fc6": 32, "fc7": 32}
VGG16_BLOCK_CHANNELS = (64, 128, 256, 512, 512)
VGG16_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
COLOR_SPACES = ("lab", "hue-chroma")
LAB_HISTOGRAMS = ("marginal", "joint")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _positive_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class HypercolumnConfig(PretrainedConfig):
    r"""
    Configuration for [`HypercolumnColorizationModel`]. The defaults are the paper's: a VGG-16 trunk on the
    L channel (fc6 a 7x7 and fc7 a 1x1 convolution on pool5, 4096 channels), a hypercolumn of conv1_2,
    conv2_2, conv3_3, conv4_3, conv5_3, fc6 and fc7 (each bilinearly upsampled to the pixel), a hidden
    layer `h_fc1` of 1024 units and per-pixel histograms; 128 sampled pixels per image in training.

    Args:
        width_multiplier (`float`): scales the trunk's channels (conv blocks, fc6, fc7) for CPU-trainable
            variants; 1.0 is VGG-16.
        hypercolumn_layers (`list[str]`): which of `HYPERCOLUMN_LAYERS` feed the hypercolumn (network order,
            no repeats). The trunk stops after the deepest one.
        hidden_size (`int`): units of `h_fc1`.
        fc_channels (`int`): channels of fc6 and fc7 (before `width_multiplier`).
        fc6_kernel_size (`int`): fc6's kernel (odd; 7 is VGG-16's, so converted weights fit).
        norm_type (`str`): "none" (VGG-16, the paper, needed for `--init-backbone`), "batch" or "group"
            after every trunk convolution (helps training from random initialisation).
        color_space (`str`): "lab" (histograms of a and b) or "hue-chroma" (the paper's HSV-cone variant:
            hue and chroma histograms, lightness passed through).
        lab_histogram (`str`): for "lab", "marginal" (a and b, `num_bins` each) or "joint" (`joint_bins` x
            `joint_bins` classes).
        num_bins (`int`): bins of each marginal histogram (K = 32 in the paper).
        joint_bins (`int`): bins per axis of the joint Lab histogram (16 in the paper).
        lab_sigma (`float`): Lab bin edges are evenly spaced quantiles of N(0, lab_sigma) (25 in the paper).
        hue_weight (`float`): lambda_H, the weight of the chroma-weighted hue loss (5 in the paper).
        sample_pixels (`int`): pixels per image whose hypercolumn is computed in training (sparse training).
        output_stride (`int`): dense inference predicts one histogram per `output_stride` x `output_stride`
            input pixels (4, like the ECCV16 family, so both render alike).
        decode_mode (`str`): "mean" (expectation), "annealed_mean", "mode", "median" or "sample"; applied to
            a and b, or to chroma (hue always decodes on the circle: see the model). Default: "mean" for
            Lab, "median" for hue/chroma (the paper's best).
        decode_temperature (`float`): temperature of "annealed_mean" and "sample".
        chromatic_fading (`bool`), fading_eta (`float`): hue/chroma only: scale chroma by
            `min(|z| / eta, 1)`, z the circular mean of the hue histogram (eta = 0.03 in the paper).
        image_size (`int`): the side the L channel is resized to before the network (a multiple of 8).
    """

    model_type = "hypercolumn-colorization"

    def __init__(
        self,
        width_multiplier=1.0,
        hypercolumn_layers=HYPERCOLUMN_LAYERS,
        hidden_size=1024,
        fc_channels=4096,
        fc6_kernel_size=7,
        norm_type="none",
        num_groups=32,
        color_space="lab",
        lab_histogram="marginal",
        num_bins=32,
        joint_bins=16,
        lab_sigma=25.0,
        hue_weight=5.0,
        sample_pixels=128,
        output_stride=4,
        decode_mode=None,
        decode_temperature=0.38,
        chromatic_fading=True,
        fading_eta=0.03,
        image_size=256,
        **kwargs,
    ):
        layers = list(hypercolumn_layers) if isinstance(hypercolumn_layers, (list, tuple)) else None
        if not layers or any(layer not in HYPERCOLUMN_LAYERS for layer in layers):
            raise ValueError(f"hypercolumn_layers must be a non-empty list of {', '.join(HYPERCOLUMN_LAYERS)}, "
                             f"got {hypercolumn_layers!r}")
        if len(set(layers)) != len(layers) or layers != sorted(layers, key=HYPERCOLUMN_LAYERS.index):
            raise ValueError(f"hypercolumn_layers must be in network order without repeats, got {layers!r}")
        if color_space not in COLOR_SPACES:
            raise ValueError(f"color_space must be one of {', '.join(COLOR_SPACES)}, got {color_space!r}")
        if lab_histogram not in LAB_HISTOGRAMS:
            raise ValueError(f"lab_histogram must be one of {', '.join(LAB_HISTOGRAMS)}, got {lab_histogram!r}")
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {', '.join(NORM_TYPES)}, got {norm_type!r}")
        for name in ("hidden_size", "fc_channels", "num_groups", "sample_pixels", "output_stride", "image_size"):
            _positive_int(name, locals()[name])
        for name in ("num_bins", "joint_bins"):
            if _positive_int(name, locals()[name]) < 2:
                raise ValueError(f"{name} must be at least 2, got {locals()[name]}")
        if _positive_int("fc6_kernel_size", fc6_kernel_size) % 2 == 0:
            raise ValueError(f"fc6_kernel_size must be odd, got {fc6_kernel_size}")
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
        if decode_mode is None:
            decode_mode = "median" if color_space == "hue-chroma" else "mean"
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {', '.join(DECODE_MODES)}, got {decode_mode!r}")
        if not isinstance(chromatic_fading, bool):
            raise ValueError(f"chromatic_fading must be true or false, got {chromatic_fading!r}")
        if not __name__.startswith("transformers_modules"):
            kwargs.pop("custom_pipelines", None)  # as in ColorizationConfig: the task is registered locally
        self.width_multiplier = _positive_number("width_multiplier", width_multiplier)
        self.hypercolumn_layers = layers
        self.hidden_size = hidden_size
        self.fc_channels = fc_channels
        self.fc6_kernel_size = fc6_kernel_size
        self.norm_type = norm_type
        self.num_groups = num_groups
        self.color_space = color_space
        self.lab_histogram = lab_histogram
        self.num_bins = num_bins
        self.joint_bins = joint_bins
        self.lab_sigma = _positive_number("lab_sigma", lab_sigma)
        self.hue_weight = _positive_number("hue_weight", hue_weight)
        self.sample_pixels = sample_pixels
        self.output_stride = output_stride
        self.decode_mode = decode_mode
        self.decode_temperature = _positive_number("decode_temperature", decode_temperature)
        self.chromatic_fading = chromatic_fading
        self.fading_eta = _positive_number("fading_eta", fading_eta)
        self.image_size = image_size
        super().__init__(**kwargs)

    @property
    def head_sizes(self) -> dict:
        """Histogram heads in output order -> bins: {"a", "b"}, {"ab"} (joint) or {"hue", "chroma"}."""
        if self.color_space == "hue-chroma":
            return {"hue": self.num_bins, "chroma": self.num_bins}
        if self.lab_histogram == "joint":
            return {"ab": self.joint_bins ** 2}
        return {"a": self.num_bins, "b": self.num_bins}

    def scaled(self, channels: int) -> int:
        """Trunk channels after the width multiplier (at least 8; a multiple of the groups for GroupNorm)."""
        c = max(8, int(round(channels * self.width_multiplier)))
        if self.norm_type == "group":
            g = min(self.num_groups, c)
            c = max(g, (c // g) * g)
        return c

    def layer_channels(self) -> dict:
        """Channels of every hypercolumn layer (after the width multiplier)."""
        blocks = [self.scaled(c) for c in VGG16_BLOCK_CHANNELS]
        fc = self.scaled(self.fc_channels)
        return {"conv1_2": blocks[0], "conv2_2": blocks[1], "conv3_3": blocks[2], "conv4_3": blocks[3],
                "conv5_3": blocks[4], "fc6": fc, "fc7": fc}
