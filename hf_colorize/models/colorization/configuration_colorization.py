"""Configuration of the Zhang et al. (ECCV 2016) colorization network.

This file travels to the Hub as remote code: it imports only transformers (and the standard library).
"""

from transformers import PretrainedConfig

# The 313 in-gamut ab bin centres (grid 10) of the original ECCV16 release, in its order (sorted by a,
# then b). Stored compactly as {a: (b_min, b_max)}; every b on the 10-grid between them is a bin.
_ECCV16_AB_RANGES = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100), -40: (-40, 100),
    -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100), 10: (-80, 90), 20: (-80, 90),
    30: (-90, 90), 40: (-100, 90), 50: (-100, 80), 60: (-110, 80), 70: (-110, 80), 80: (-110, 70),
    90: (-110, 70), 100: (-90, 0),
}


def eccv16_ab_bins() -> list:
    """The 313 (a, b) bin centres of the original ECCV16 release, in the original order."""
    return [[a, b] for a, (lo, hi) in _ECCV16_AB_RANGES.items() for b in range(lo, hi + 1, 10)]


DECODE_MODES = ("annealed_mean", "mode", "mean", "median", "sample")
NORM_TYPES = ("batch", "group", "none")


class ColorizationConfig(PretrainedConfig):
    r"""
    Configuration for [`ColorizationModel`]. The defaults reproduce the ECCV16 architecture exactly
    (8 conv blocks, dilated blocks 5-6, 4x4 stride-2 deconvolution in block 8, 1x1 conv to 313 logits,
    total stride 4, 32.2M parameters).

    Args:
        block_channels (`list[int]`): output channels of the 8 conv blocks (before `width_multiplier`).
        block_depths (`list[int]`): number of convolutions in each block.
        block_dilations (`list[int]`): dilation of the convolutions in each block.
        width_multiplier (`float`): scales every block's channels, for small CPU-trainable variants.
        norm_type (`str`): "batch" (the paper), "group" or "none"; blocks 1-7 end with it.
        num_groups (`int`): groups of the GroupNorm when `norm_type="group"`.
        ab_bins (`list[list[float]]`): the Q (a, b) bin centres; default the 313 of the ECCV16 release.
            Any set works (e.g. a k-means palette); it must match the weights' classifier.
        decode_temperature (`float`): annealed-mean temperature T (T -> 0 is the mode, T = 1 the mean).
            (Not called `temperature`: transformers reserves that name for generation settings.)
        decode_mode (`str`): one of "annealed_mean", "mode", "mean", "median", "sample".
        image_size (`int`): the side the L channel is resized to before the network.
        rebalance_lambda, prior_sigma (`float`): class-rebalancing mix with uniform and prior smoothing.
        soft_encode_neighbors, soft_encode_sigma: soft-encoding of targets (5 nearest bins, sigma 5).
        loss_type (`str`): "rebalanced_ce" (the paper), "ce" (no rebalancing) or "focal".
        focal_gamma (`float`): focusing parameter of the focal loss.
        gray_chroma_threshold (`float`): an image whose mean ab chroma is below it counts as
            having no colour and is masked out of the loss.
        hint_inputs (`bool`): local hints (Zhang et al., SIGGRAPH 2017): the network also takes a sparse ab
            hint map and its mask beside L (`forward(hint_ab=, hint_mask=)`). Off for converted ECCV16 weights
            and for every config saved before the option existed.
        global_hints (`bool`): global hints: the network also takes a colour distribution over the Q bins
            (`forward(global_hint=)`), projected and added to the input of block 5.
        hint_shortcut (`bool`): with `hint_inputs`, the local hints also enter at block 5's input (1/8
            resolution, `LocalHintShortcut`), so they reach the output through 4 blocks instead of 8 and
            are learnt in a short fine-tune. Off for models saved before it existed.
    """

    model_type = "colorization"

    def __init__(
        self,
        block_channels=(64, 128, 256, 512, 512, 512, 512, 256),
        block_depths=(2, 2, 3, 3, 3, 3, 3, 3),
        block_dilations=(1, 1, 1, 1, 2, 2, 1, 1),
        width_multiplier=1.0,
        norm_type="batch",
        num_groups=32,
        ab_bins=None,
        decode_temperature=0.38,
        decode_mode="annealed_mean",
        image_size=256,
        rebalance_lambda=0.5,
        prior_sigma=5.0,
        soft_encode_neighbors=5,
        soft_encode_sigma=5.0,
        loss_type="rebalanced_ce",
        focal_gamma=2.0,
        gray_chroma_threshold=2.0,
        hint_inputs=False,
        global_hints=False,
        hint_shortcut=False,
        **kwargs,
    ):
        for name, value in (("block_channels", block_channels), ("block_depths", block_depths),
                            ("block_dilations", block_dilations)):
            if not isinstance(value, (list, tuple)) or len(value) != 8 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"{name} must be a list of 8 positive integers, got {value!r}")
        for name, value in (("width_multiplier", width_multiplier), ("decode_temperature", decode_temperature),
                            ("rebalance_lambda", rebalance_lambda), ("prior_sigma", prior_sigma),
                            ("soft_encode_sigma", soft_encode_sigma), ("focal_gamma", focal_gamma),
                            ("gray_chroma_threshold", gray_chroma_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        for name, value in (("hint_inputs", hint_inputs), ("global_hints", global_hints),
                            ("hint_shortcut", hint_shortcut)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if not decode_temperature > 0:
            raise ValueError(f"decode_temperature must be > 0, got {decode_temperature}")
        if loss_type not in ("rebalanced_ce", "ce", "focal"):
            raise ValueError(f"loss_type must be 'rebalanced_ce', 'ce' or 'focal', got {loss_type!r}")
        if not __name__.startswith("transformers_modules"):
            # installed package: the pipeline task is registered locally, and a custom_pipelines entry
            # would make transformers.pipeline() insist on trust_remote_code
            kwargs.pop("custom_pipelines", None)
        if ab_bins is None:
            ab_bins = eccv16_ab_bins()
        elif not isinstance(ab_bins, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in p) for p in ab_bins):
            raise ValueError("ab_bins must be a list of [a, b] number pairs")
        else:
            ab_bins = [[float(a), float(b)] for a, b in ab_bins]
        if len(ab_bins) < 2:
            raise ValueError(f"ab_bins needs at least 2 bin centres, got {len(ab_bins)}")
        self.block_channels = list(block_channels)
        self.block_depths = list(block_depths)
        self.block_dilations = list(block_dilations)
        self.width_multiplier = float(width_multiplier)
        self.norm_type = norm_type
        self.num_groups = num_groups
        self.ab_bins = ab_bins
        self.decode_temperature = float(decode_temperature)
        self.decode_mode = decode_mode
        self.image_size = int(image_size)
        self.rebalance_lambda = float(rebalance_lambda)
        self.prior_sigma = float(prior_sigma)
        self.soft_encode_neighbors = int(soft_encode_neighbors)
        self.soft_encode_sigma = float(soft_encode_sigma)
        self.loss_type = loss_type
        self.focal_gamma = float(focal_gamma)
        self.gray_chroma_threshold = float(gray_chroma_threshold)
        self.hint_inputs = hint_inputs
        self.global_hints = global_hints
        self.hint_shortcut = hint_shortcut
        super().__init__(**kwargs)

    @property
    def num_bins(self) -> int:
        return len(self.ab_bins)

    def scaled_channels(self) -> list:
        """Channels of each block after the width multiplier (at least 8, multiple of the GroupNorm groups)."""
        out = []
        for c in self.block_channels:
            c = max(8, int(round(c * self.width_multiplier)))
            if self.norm_type == "group":
                g = min(self.num_groups, c)
                c = max(g, (c // g) * g)
            out.append(c)
        return out
