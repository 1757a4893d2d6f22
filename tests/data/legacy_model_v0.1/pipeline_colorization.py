"""The `image-colorization` pipeline: images in, colorized RGB images at original resolution out.

This file travels to the Hub as remote code: it imports only its siblings, transformers, torch and PIL.
"""

import os
from typing import Optional

import torch
from transformers import Pipeline

from .image_processing_colorization import ColorizationImageProcessor, ColorizationInputError


# `precision` option -> autocast dtype (None: plain float32)
PRECISIONS = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}


class _Passthrough:
    """Carries a value through the pipeline's batching untouched (it only splits tensors and arrays)."""

    def __init__(self, value):
        self.value = value


class ImageColorizationPipeline(Pipeline):
    """Colorize black-and-white (or any) photos.

    ```python
    import hf_colorize  # registers the task
    from transformers import pipeline
    colorize = pipeline("image-colorization", model=hf_colorize.DEFAULT_MODEL)
    colorize("photo.jpg", temperature=0.38)          # -> PIL.Image (RGB, original size)
    colorize(["a.jpg", "b.png"], batch_size=2)      # -> [PIL.Image, PIL.Image]
    ```

    Call-time options: `temperature` (annealed mean; lower = more vivid, towards the mode; 1 = mean),
    `decode_mode` ("annealed_mean", "mode", "mean", "median", "sample"), `size` (network input side,
    multiple of 8), `seed` (for "sample"), `output_type` ("pil", "np", "pt"), `precision` ("fp32";
    "bf16" runs the convolutions under bfloat16 autocast: about 3x faster on CPUs with AVX512-BF16/AMX and
    on GPUs, within ~1 ab unit of fp32; "fp16" for GPUs). Any option can also be given at construction:
    `pipeline("image-colorization", model=..., precision="bf16")`.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = ColorizationImageProcessor()
        # NHWC weights: oneDNN's fast convolution layout (same values; ~8% faster fp32, ~25% bf16 on CPU)
        self.model.to(memory_format=torch.channels_last)

    def _sanitize_parameters(self, temperature=None, decode_mode=None, size=None, seed=None, output_type=None,
                             precision=None, **kwargs):
        preprocess, forward, postprocess = {}, {}, {}
        if precision is not None:
            key = str(precision).replace("torch.", "").lower()  # accepts "bf16" or torch.bfloat16
            if key not in PRECISIONS:
                raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
            forward["precision"] = key
        if size is not None:
            preprocess["size"] = size
        if temperature is not None:
            if not float(temperature) > 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
            forward["temperature"] = float(temperature)
        if decode_mode is not None:
            forward["decode_mode"] = decode_mode
        if seed is not None:
            forward["seed"] = int(seed)
        if output_type is not None:
            postprocess["output_type"] = output_type
        return preprocess, forward, postprocess

    def preprocess(self, image, size: Optional[int] = None):
        try:
            l_full, pixel_values = self.image_processor.prepare(image, size)
        except ColorizationInputError as err:
            if isinstance(image, (str, os.PathLike)):  # in a batch, say which file is bad
                raise ColorizationInputError(f"{os.fsdecode(image)}: {err}") from None
            raise
        pixel_values = pixel_values[None]
        if self.dtype is not None and self.dtype.is_floating_point:
            pixel_values = pixel_values.to(self.dtype)
        return {"pixel_values": pixel_values, "original_l": _Passthrough(l_full)}

    def _forward(self, model_inputs, temperature=None, decode_mode=None, seed=None, precision=None):
        pixel_values = model_inputs["pixel_values"]
        generator = None
        if seed is not None:
            generator = torch.Generator(device=pixel_values.device).manual_seed(seed)
        dtype = PRECISIONS[precision] if precision else None
        # reduced precision: convolutions under autocast (the model decodes in float32 regardless);
        # channels_last lets oneDNN / cuDNN pick their fast NHWC kernels (same results)
        with torch.autocast(pixel_values.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            outputs = self.model(
                pixel_values=pixel_values.contiguous(memory_format=torch.channels_last), temperature=temperature,
                decode_mode=decode_mode, generator=generator,
            )
        return {"ab": outputs.ab, "original_l": model_inputs["original_l"]}

    def postprocess(self, model_outputs, output_type: str = "pil"):
        held = model_outputs["original_l"]
        l_full = held.value if isinstance(held, _Passthrough) else held
        ab = model_outputs["ab"]
        ab = ab[0] if ab.dim() == 4 else ab
        return self.image_processor.colorize_l(l_full, ab, output_type=output_type)
