"""The one inference path: `Colorizer` (prepare -> forward -> decode -> render) and the
`image-colorization` pipeline built on it.

The pipeline, the CLI, video, evaluation, the Hub examples and the Space all colorize through a
`Colorizer`, so they share one set of options whose defaults come from the model's config. This file
travels to the Hub as remote code: it imports only its siblings, transformers, torch, numpy and PIL.
"""

import os
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch
from transformers import Pipeline

from .configuration_colorization import DECODE_MODES
from .modeling_colorization import hint_input_maps
from .guidance_colorization import (DEFAULT_REFERENCE_STRENGTH, Guidance, GuidanceError, HintField, ab_to_hex,
                                    model_prior, parse_hints, pin_hints, prior_swap_bias, reference_distribution)
from .image_processing_colorization import ColorizationImageProcessor, ColorizationInputError, ColorizeError

# `precision` option -> autocast dtype (None: plain float32). "auto" resolves to one of these (see
# `auto_precision`); "int8" runs the network through a logits backend (see `LOGITS_BACKENDS`).
PRECISIONS = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}
_CANONICAL = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")
DEFAULT_PRECISION = "auto"
OUTPUT_TYPES = ("pil", "np", "pt", "lab")
#: call-time options of `Colorizer` and the pipeline (construction adds `device` and `batch_size`)
OPTIONS = ("temperature", "decode_mode", "size", "precision", "seed", "output_type", "chromatic_fading", "fading_eta",
           "hints", "reference", "reference_strength")
#: the guidance options (see `guidance_colorization`): per-image hints, a reference for every image, its strength
GUIDANCE_OPTIONS = ("hints", "reference", "reference_strength")
#: options only hue/chroma hypercolumn models (Larsson et al.) have
FADING_OPTIONS = ("chromatic_fading", "fading_eta")
#: precision -> a backend that computes the bin logits outside torch autocast: an object with
#: `check()` (raises `ColorizationBackendError` when its runtime is missing) and `create(model,
#: image_processor)` -> a callable `pixel_values (B, 1, S, S) -> float32 logits (B, Q, S/4, S/4)`. The
#: installed package registers "int8" (ONNX Runtime, `hf_colorize.export.int8`); with only these
#: remote-code files, "int8" is refused with one line saying what to install.
LOGITS_BACKENDS = {}
_MISSING_BACKEND = {"int8": "precision 'int8' needs the hf-colorize package with ONNX Runtime: pip install 'hf-colorize[onnx]'"}


class ColorizationModelError(ColorizeError):
    """The network failed on a batch (e.g. out of memory); the message is one line."""


class ColorizationBackendError(ColorizeError, ValueError):
    """A precision whose runtime is not installed here (e.g. "int8" without onnxruntime); the message is one
    line saying what to install."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _precision_key(precision) -> str:
    key = str(precision).replace("torch.", "").lower()  # accepts "bf16" or torch.bfloat16
    key = _CANONICAL.get(key, key)
    if key not in PRECISION_CHOICES:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got {precision!r}")
    return key


def check_backend(precision: str) -> None:
    """Raise `ColorizationBackendError` (one line) when `precision` needs a backend this process lacks."""
    if precision not in _MISSING_BACKEND:
        return
    backend = LOGITS_BACKENDS.get(precision)
    if backend is None:
        raise ColorizationBackendError(_MISSING_BACKEND[precision])
    backend.check()


# -- precision="auto" -------------------------------------------------------------------------------
def _flag(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a torch build without the probe: the capability counts as absent
        return False


def hardware_capabilities(device_type: str) -> dict:
    """What `auto_precision` decides on: on CPU, whether the cores have AMX tiles (`amx`) and AVX512-BF16
    (`avx512_bf16`, recorded only); on CUDA, the compute capability (`cuda_major`) and bf16 support."""
    if device_type == "cuda":
        major, _ = torch.cuda.get_device_capability()
        return {"cuda_major": int(major), "cuda_bf16": bool(torch.cuda.is_bf16_supported())}
    if device_type == "cpu":
        return {"amx": _flag("_is_amx_tile_supported"), "avx512_bf16": _flag("_is_avx512_bf16_supported")}
    return {}


def auto_precision(device_type: str, capabilities: Optional[dict] = None) -> str:
    """The rule behind `precision="auto"`: the fastest precision this hardware runs well, never one slower
    than fp32.

    - CPU: "bf16" only with AMX (oneDNN's AMX bf16 convolutions are ~3x fp32's). AVX512-BF16 without AMX
      is not enough: measured slower than fp32 on such a Xeon (bf16 autocast adds casts, and its
      non-AMX kernels gain little). Otherwise "fp32".
    - CUDA: "bf16" where supported (Ampere and newer), "fp16" on Volta/Turing tensor cores, else "fp32".
    - Anything else (MPS, XPU, ...): "fp32".

    Never "int8": quantized output is not bit-close to fp32 and needs calibration and ONNX Runtime; ask for it.
    `capabilities` (default `hardware_capabilities(device_type)`) can be given to test the rule."""
    caps = hardware_capabilities(device_type) if capabilities is None else capabilities
    if device_type == "cpu":
        return "bf16" if caps.get("amx") else "fp32"
    if device_type == "cuda":
        if caps.get("cuda_bf16") and caps.get("cuda_major", 0) >= 8:
            return "bf16"
        return "fp16" if caps.get("cuda_major", 0) >= 7 else "fp32"
    return "fp32"


_AUTO = {}  # device type -> resolved precision, once per process


def resolve_precision(precision, device) -> str:
    """A concrete precision ("fp32", "bf16", "fp16", "int8") for `precision` (any accepted spelling or
    "auto") on `device`; "auto" is decided once per process and device type (`auto_precision`)."""
    key = _precision_key(precision)
    if key != "auto":
        return key
    device_type = torch.device(device).type
    if device_type not in _AUTO:
        _AUTO[device_type] = auto_precision(device_type)
    return _AUTO[device_type]


def check_options(**options) -> dict:
    """Validate call-time options; returns those given (None values dropped), normalized. Raises
    `TypeError` for an unknown name and `ValueError` for a bad value, naming it."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown colorization option(s) {', '.join(map(repr, unknown))}; known: {', '.join(OPTIONS)}")
    out = {k: v for k, v in options.items() if v is not None}
    if "temperature" in out:
        t = out["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < float(t) < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
        out["temperature"] = float(t)
    if "decode_mode" in out and out["decode_mode"] not in DECODE_MODES:
        raise ValueError(f"decode_mode must be one of {', '.join(DECODE_MODES)}, got {out['decode_mode']!r}")
    if "size" in out:
        size = out["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {size!r}")
    if "precision" in out:
        out["precision"] = _precision_key(out["precision"])
        check_backend(out["precision"])
    if "seed" in out:
        out["seed"] = int(out["seed"])
    if "output_type" in out and out["output_type"] not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {out['output_type']!r}")
    if "chromatic_fading" in out and not isinstance(out["chromatic_fading"], bool):
        raise ValueError(f"chromatic_fading must be True or False, got {out['chromatic_fading']!r}")
    if "fading_eta" in out:
        eta = out["fading_eta"]
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 < float(eta) < float("inf"):
            raise ValueError(f"fading_eta must be a finite number > 0, got {eta!r}")
        out["fading_eta"] = float(eta)
    if "hints" in out and (isinstance(out["hints"], (str, bytes)) or not isinstance(out["hints"], (list, tuple, dict))):
        raise GuidanceError(f"hints must be a list of hints (or, for several images, one list per image or a dict "
                            f"file name -> list), got {type(out['hints']).__name__}")
    if "reference_strength" in out:
        s = out["reference_strength"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= float(s) < float("inf"):
            raise ValueError(f"reference_strength must be a finite number >= 0, got {s!r}")
        out["reference_strength"] = float(s)
    return out


def _looks_like_hint(item) -> bool:
    return isinstance(item, dict) or (isinstance(item, (list, tuple)) and len(item) == 3 and not isinstance(
        item[0], (list, tuple, dict)))


def per_image_hints(hints, images: Optional[list]) -> Callable:
    """`hints` of a call on several images (a list with one entry per image, each a hint list or None, or a dict
    file name or path -> hint list) -> a function `(index, image) -> hint list or None`. With `images` (a list)
    a dict key that names none of them is refused before any work."""
    if hints is None:
        return lambda index, image: None
    if isinstance(hints, dict):
        def key_of(image):
            return os.fsdecode(image) if isinstance(image, (str, os.PathLike)) else None

        if images is not None:
            names = {key_of(im) for im in images} | {os.path.basename(key_of(im)) for im in images if key_of(im)}
            missing = [k for k in hints if k not in names]
            if missing:
                raise GuidanceError(f"hints for {missing[0]!r}, which is not among the images"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

        def lookup(index, image):
            key = key_of(image)
            if key is None:
                return None
            return hints.get(key, hints.get(os.path.basename(key)))
        return lookup
    if hints and _looks_like_hint(hints[0]):
        raise GuidanceError("for several images give hints as one list per image (or a dict file name -> list), "
                            "not one flat list")
    if images is not None and len(hints) != len(images):
        raise GuidanceError(f"got hint lists for {len(hints)} images but {len(images)} images")
    return lambda index, image: hints[index] if index < len(hints) else None


def _named(err: Exception, image) -> Exception:
    """An input's error, its message prefixed with the file name when the input is a path (so a batch
    says which file is bad)."""
    if isinstance(err, ColorizeError) and isinstance(image, (str, os.PathLike)):
        return type(err)(f"{os.fsdecode(image)}: {err}")
    return err


class Colorizer:
    """Colorize images with a colorization model: `prepare` (image -> full-resolution L + network input),
    `logits` (the network, under the chosen precision), `decode` (bin distribution -> ab) and `render`
    (ab upsampled and joined with the full-resolution L).

    ```python
    from hf_colorize import Colorizer
    colorizer = Colorizer.from_pretrained("user/colorizer", precision="bf16")
    colorizer("photo.jpg")                                  # PIL image, the photo's size
    colorizer(["a.jpg", "b.png"], temperature=0.2)          # list of PIL images
    ```

    Options (at construction, or per call): `temperature` (annealed mean; default the model's
    `decode_temperature`), `decode_mode` (default the model's), `size` (network input side, a multiple of
    8; default the image processor's, i.e. the model's `image_size`), `precision` ("auto", the default:
    the fastest of fp32 / bf16 / fp16 this hardware runs well, see `auto_precision` and
    `resolved_precision`; "fp32"; "bf16"; "fp16"; "int8": quantized convolutions through ONNX Runtime,
    CPU only, needs `pip install 'hf-colorize[onnx]'`), `seed` (for `decode_mode="sample"`),
    `output_type` ("pil", "np", "pt", "lab"), and for hue/chroma hypercolumn models `chromatic_fading`
    and `fading_eta` (default the model's). Construction also takes `device` (default: where the model
    is) and `batch_size` (images per forward pass). Unknown options raise `TypeError`; bad values raise
    `ValueError` (`ColorizationBackendError`, also a `ValueError`, for a precision whose runtime is missing).
    """

    def __init__(self, model, image_processor=None, *, device=None, batch_size: int = 4, channels_last: bool = True,
                 **options):
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        if image_processor is None:
            image_processor = ColorizationImageProcessor(size=getattr(model.config, "image_size", 256))
        self.image_processor = image_processor
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        # NHWC: oneDNN's and cuDNN's fast convolution layout (same values; ~8% faster fp32, ~25% bf16 on CPU)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.defaults = {"temperature": None, "decode_mode": None, "size": None, "precision": DEFAULT_PRECISION,
                         "seed": None, "output_type": "pil", "chromatic_fading": None, "fading_eta": None,
                         "hints": None, "reference": None, "reference_strength": None}
        if options.get("hints") is not None:
            raise GuidanceError("hints belong to an image: give them with each call, not to the Colorizer")
        self.defaults.update(self._checked(options))
        if self.defaults["reference"] is not None:  # read once here, not again for every image
            self.defaults["reference"] = self.reference_distribution(self.defaults["reference"])
        self._backends = {}  # precision -> logits callable (e.g. the int8 session), built on first use
        self._check_device(self.resolve_precision())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, trust_remote_code: bool = False, dtype=None,
                        **kwargs) -> "Colorizer":
        """Load a model folder or Hub id (its config, weights and image processor) into a `Colorizer`.
        `kwargs` are the constructor's (`device`, `batch_size`, options)."""
        from transformers import AutoImageProcessor, AutoModel

        model = AutoModel.from_pretrained(pretrained_model_name_or_path, trust_remote_code=trust_remote_code,
                                          dtype=dtype or torch.float32)
        try:
            processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path,
                                                           trust_remote_code=trust_remote_code)
        except (OSError, ValueError):  # a folder saved without preprocessor_config.json: the model's defaults
            processor = None
        return cls(model, processor, **kwargs)

    #: validate call-time options without a model (see `check_options`)
    options = staticmethod(check_options)

    def _checked(self, options: dict) -> dict:
        """`check_options`, plus: the chromatic fading options exist for hue/chroma models only."""
        out = check_options(**options)
        guided = [k for k in GUIDANCE_OPTIONS if k in out]
        if guided and not hasattr(self.model, "bin_prior"):
            raise GuidanceError(f"{guided[0]}: guidance (hints, reference) needs an ECCV16-family bin model; this "
                                f"{self.model.config.model_type!r} model cannot take it yet")
        given = [k for k in FADING_OPTIONS if k in out]
        if given and getattr(self.model.config, "color_space", None) != "hue-chroma":
            raise ValueError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to hue/chroma hypercolumn "
                             "models only; this is a "
                             f"{self.model.config.model_type!r} model" + (
                                 f" predicting {self.model.config.color_space} histograms"
                                 if hasattr(self.model.config, "color_space") else ""))
        return out

    def validate(self, **options) -> dict:
        """`check_options`, plus whether this model can take them (e.g. guidance needs an ECCV16-family bin
        model); returns the options given, normalized."""
        return self._checked(options)

    def _resolved(self, options: dict) -> dict:
        return {**self.defaults, **self._checked(options)}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def resolve_precision(self, precision=None) -> str:
        """The concrete precision ("fp32", "bf16", "fp16" or "int8") that `precision` (default the
        colorizer's own) runs as here: "auto" decided by `auto_precision` for this device."""
        return resolve_precision(precision or self.defaults["precision"], self.device)

    @property
    def resolved_precision(self) -> str:
        """What the default `precision` runs as on this colorizer's device (e.g. "auto" -> "fp32")."""
        return self.resolve_precision()

    def _check_device(self, precision: str) -> None:
        if precision in LOGITS_BACKENDS or precision in _MISSING_BACKEND:
            if self.device.type != "cpu":
                raise ValueError(f"precision {precision!r} runs on the CPU only; the model is on {self.device.type}")

    # -- the four steps -----------------------------------------------------------------------------
    def prepare(self, image, size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Any image -> `(l_full (1, H, W), pixel_values (1, size, size))`."""
        return self.image_processor.prepare(image, size or self.defaults["size"])

    def logits(self, pixel_values: torch.Tensor, precision: Optional[str] = None, **hint_inputs) -> torch.Tensor:
        """Normalized L `(B, 1, S, S)` -> bin logits `(B, Q, S/4, S/4)`, float32. `hint_inputs`: a hint-trained
        model's extra inputs (`hint_ab`, `hint_mask`, `global_hint`; see `network_inputs`)."""
        key = self.resolve_precision(precision)
        if key not in PRECISIONS:
            if hint_inputs:
                raise ColorizationBackendError(f"precision {key!r} cannot feed this model's hint inputs; use fp32 or bf16")
            return self._backend(key)(pixel_values.float().cpu())
        dtype = PRECISIONS[key]
        device = self.device
        param_dtype = next(self.model.parameters()).dtype
        x = pixel_values.to(device, param_dtype)
        extra = {k: v.to(device, param_dtype) for k, v in hint_inputs.items()}
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            extra = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in extra.items()}
        # reduced precision: the convolutions under autocast; decoding always runs in float32
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return self.model(pixel_values=x, decode=False, **extra).logits.float()

    # -- guidance (see guidance_colorization) ---------------------------------------------------------
    @property
    def hint_inputs(self) -> Tuple[bool, bool]:
        """Whether the model takes (local point hints, a global colour distribution) as network inputs
        (hint-trained models); guidance it has no input for goes the training-free way."""
        config = self.model.config
        return bool(getattr(config, "hint_inputs", False)), bool(getattr(config, "global_hints", False))

    def reference_distribution(self, reference) -> torch.Tensor:
        """A reference (an image, a list of colours, a dict colour -> weight, or a distribution tensor `(Q,)`
        over the model's bins) -> a colour distribution `(Q,)` over the model's bins."""
        bins = self.model.ab_bins.detach().float().cpu()
        if isinstance(reference, torch.Tensor) and reference.dim() == 1:
            dist = reference.detach().float().cpu()
            if dist.numel() != bins.shape[0] or not torch.isfinite(dist).all() or (dist < 0).any() or dist.sum() <= 0:
                raise GuidanceError(f"reference: a distribution must have {bins.shape[0]} finite entries >= 0, not all 0")
            return dist / dist.sum()
        return reference_distribution(reference, bins)

    def guidance(self, width: int, height: int, hints=None, reference=None,
                 reference_strength: Optional[float] = None) -> Optional[Guidance]:
        """The guidance of one `width` x `height` image (None when nothing is given): `hints` as in
        `parse_hints`, `reference` as in `reference_distribution` (default the colorizer's own)."""
        self._checked({"hints": hints, "reference": reference, "reference_strength": reference_strength})
        parsed = parse_hints(hints, width, height)
        reference = self.defaults["reference"] if reference is None else reference
        dist = None if reference is None else self.reference_distribution(reference)
        strength = reference_strength if reference_strength is not None else self.defaults["reference_strength"]
        if not parsed and dist is None:
            return None
        return Guidance(width, height, tuple(parsed), dist, DEFAULT_REFERENCE_STRENGTH if strength is None else strength)

    def network_inputs(self, guidance: List[Optional[Guidance]], size: int) -> dict:
        """A hint-trained model's extra inputs for a batch (`{}` when it has none or nothing is given): each
        hint's ab at its pixel of the `size` x `size` network input (`hint_ab` `(B, 2, S, S)`, `hint_mask`
        `(B, 1, S, S)`) and the reference as `global_hint` `(B, Q)`."""
        local, global_ = self.hint_inputs
        out = {}
        if local and any(g is not None and g.hints for g in guidance):
            maps = [hint_input_maps([(min(size - 1, int(h.y * size / g.height)), min(size - 1, int(h.x * size / g.width)),
                                      *h.ab) for h in (g.hints if g is not None else ())], size, size)
                    for g in guidance]
            out.update(hint_ab=torch.cat([m[0] for m in maps]), hint_mask=torch.cat([m[1] for m in maps]))
        if global_ and any(g is not None and g.reference is not None for g in guidance):
            out["global_hint"] = torch.stack([g.reference if g is not None and g.reference is not None
                                              else torch.zeros(self.model.config.num_bins) for g in guidance])
        return out

    def guided_logits(self, logits: torch.Tensor, l_full: List[torch.Tensor],
                      guidance: List[Optional[Guidance]]) -> torch.Tensor:
        """The training-free guidance on bin logits `(B, Q, h, w)` (each image's full-resolution L `(1, H, W)`
        and `Guidance` or None): the prior swap for a reference where the model has no global-hint input, and
        the pinning of point hints always: on a hint-trained model it comes on top of the network's hint inputs
        (network inputs alone gave +2.7 dB at 10 hints, pinning alone +4.1, both +4.1: docs/guidance.md)."""
        _, global_ = self.hint_inputs
        out = []
        for i, g in enumerate(guidance):
            x = logits[i]
            if g is not None and g.reference is not None and not global_ and g.strength > 0:
                bias = prior_swap_bias(g.reference, model_prior(self.model), self.model.ab_bins.detach().cpu(), g.strength)
                x = x + bias.to(x.device, x.dtype)[:, None, None]
            if g is not None and g.hints:
                x = pin_hints(x, g.hint_field(l_full[i]), self.model.ab_bins.detach())
            out.append(x)
        return torch.stack(out)

    def _backend(self, precision: str):
        """The logits callable of a registered backend (`LOGITS_BACKENDS`), built once per colorizer (the
        backend itself may cache across colorizers, e.g. the int8 model per weights)."""
        if precision not in self._backends:
            check_backend(precision)
            self._check_device(precision)
            self._backends[precision] = LOGITS_BACKENDS[precision].create(self.model, self.image_processor)
        return self._backends[precision]

    def decode(self, logits: torch.Tensor, temperature: Optional[float] = None, decode_mode: Optional[str] = None,
               seed: Optional[int] = None, pixel_values: Optional[torch.Tensor] = None,
               chromatic_fading: Optional[bool] = None, fading_eta: Optional[float] = None) -> torch.Tensor:
        """Bin logits -> ab `(B, 2, h, w)` (the model's decoder, e.g. the annealed mean). Hue/chroma
        hypercolumn models also need the network input `pixel_values` (the lightness each colour is made
        at) and take `chromatic_fading` / `fading_eta`."""
        temperature = self.defaults["temperature"] if temperature is None else temperature
        seed = self.defaults["seed"] if seed is None else seed
        generator = torch.Generator(device=logits.device).manual_seed(seed) if seed is not None else None
        extra = {}
        if getattr(self.model, "decode_needs_input", False):
            extra["pixel_values"] = None if pixel_values is None else pixel_values.to(logits.device)
        for name, value in (("chromatic_fading", chromatic_fading), ("fading_eta", fading_eta)):
            value = self.defaults[name] if value is None else value
            if value is not None:  # only hue/chroma models take them (checked with the options)
                extra[name] = value
        return self.model.decode(logits, temperature=temperature, decode_mode=decode_mode or self.defaults["decode_mode"],
                                 generator=generator, **extra)

    def render(self, l_full: torch.Tensor, ab: torch.Tensor, output_type: Optional[str] = None,
               guidance: Optional[Guidance] = None):
        """Full-resolution L `(1, H, W)` + ab `(2, h, w)` -> the colorized image (PIL by default). With point
        hints, the full-resolution ab is blended towards the hint colours along the photo's edges
        (`HintField.blend`), for hint-trained models too; L is kept."""
        refine = None
        if guidance is not None and guidance.hints:
            hint_field: HintField = guidance.hint_field(l_full)
            size = tuple(l_full.shape[-2:])

            def refine(rows, ab_rows):
                return hint_field.blend(ab_rows, rows, size)
        return self.image_processor.colorize_l(l_full, ab, output_type=output_type or self.defaults["output_type"],
                                               refine=refine)

    def predict_ab(self, pixel_values: torch.Tensor, guidance: Optional[List[Optional[Guidance]]] = None,
                   l_full: Optional[List[torch.Tensor]] = None, **options) -> torch.Tensor:
        """`logits` then `decode`: normalized L `(B, 1, S, S)` -> ab `(B, 2, S/4, S/4)` on the CPU. `guidance`:
        one `Guidance` (or None) per image, with each image's full-resolution L `l_full` (for point hints)."""
        opts = self._resolved(options)
        guided = guidance is not None and any(g is not None for g in guidance)
        logits = self.network_logits(pixel_values, guidance if guided else None, opts["precision"])
        if guided:
            if l_full is None and any(g is not None and g.hints for g in guidance):
                raise ValueError("predict_ab: point hints need each image's full-resolution L (l_full)")
            logits = self.guided_logits(logits, l_full, guidance)
        return self.decode(logits, opts["temperature"], opts["decode_mode"], opts["seed"], pixel_values=pixel_values,
                           chromatic_fading=opts["chromatic_fading"], fading_eta=opts["fading_eta"]).cpu()

    def network_logits(self, pixel_values: torch.Tensor, guidance: Optional[List[Optional[Guidance]]] = None,
                       precision: Optional[str] = None) -> torch.Tensor:
        """`logits` with a hint-trained model's inputs from `guidance` (one `Guidance` or None per image;
        `network_inputs`) and its reference strength (`_scaled_global_hint`): the network pass of every
        guided path (this colorizer, the video colorizer, the guidance evaluation)."""
        net = self.network_inputs(guidance, pixel_values.shape[-1]) if guidance and any(guidance) else {}
        logits = self.logits(pixel_values, precision, **net)
        if "global_hint" in net:
            logits = self._scaled_global_hint(logits, pixel_values, precision, net, guidance)
        return logits

    def _scaled_global_hint(self, logits, pixel_values, precision, net, guidance) -> torch.Tensor:
        """A hint-trained model's reference strength s: its logits moved s times the way the global hint moves
        them (0: as without the reference, 1: the network's own use, above 1: further), so that
        `reference_strength` means for these models what it means for the prior swap of the others."""
        strengths = torch.tensor([g.strength if g is not None and g.reference is not None else 1.0 for g in guidance])
        if bool((strengths == 1.0).all()):
            return logits
        without = self.logits(pixel_values, precision, **{k: v for k, v in net.items() if k != "global_hint"})
        scale = strengths.to(logits.device, logits.dtype)[:, None, None, None]
        return without + scale * (logits - without)

    def predicted_color(self, image, x: float, y: float, **options) -> str:
        """The colour ("#rrggbb") this colorizer gives pixel (x, y) of `image` (with any guidance in `options`):
        the default of the Space's colour picker."""
        lab = self.colorize(image, output_type="lab", **options)
        height, width = lab.shape[-2:]
        if not (0 <= x < width and 0 <= y < height):
            raise GuidanceError(f"({x:g}, {y:g}) is outside the {width}x{height} image")
        l_, a, b = lab[:, int(y), int(x)].tolist()
        return ab_to_hex((a, b), l_)

    # -- whole images -------------------------------------------------------------------------------
    def colorize_iter(self, images: Iterable, batch_size: Optional[int] = None, **options) -> Iterator[Tuple[int, object]]:
        """Colorize many images, `batch_size` (default the colorizer's) per forward pass, yielding
        `(index, result)` in input order, where `result` is the image or, for an input that failed, the
        `ColorizeError` saying why (the rest of the batch goes on)."""
        if options.get("hints") is not None and not isinstance(options["hints"], dict) and images is not None \
                and not isinstance(images, (list, tuple)):
            images = list(images)  # a list of hint lists is matched to the images by position
        opts = self._resolved(options)
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._check_device(self.resolve_precision(opts["precision"]))  # before any image is read
        hints_for = per_image_hints(opts["hints"], images if isinstance(images, (list, tuple)) else None)
        # the reference is read once for the whole call (a bad one fails before any image is read)
        reference = None if opts["reference"] is None else self.reference_distribution(opts["reference"])
        model_options = {k: opts[k] for k in OPTIONS if k not in ("output_type",) + GUIDANCE_OPTIONS}
        batch = []  # (index, l_full, pixel_values, guidance)

        def run(batch):
            guidance = [b[3] for b in batch]
            try:
                ab = self.predict_ab(torch.stack([b[2] for b in batch]), guidance=guidance, l_full=[b[1] for b in batch],
                                     **model_options)
            except ColorizeError as err:
                return [(b[0], err) for b in batch]
            except (RuntimeError, ValueError) as err:  # e.g. out of memory: the whole batch fails
                return [(b[0], ColorizationModelError(f"model failed: {_first_line(err)}")) for b in batch]
            return [(i, self.render(l_full, ab[j], opts["output_type"], g)) for j, (i, l_full, _, g) in enumerate(batch)]

        for index, image in enumerate(images):
            try:
                l_full, pixel_values = self.prepare(image, opts["size"])
                height, width = l_full.shape[-2:]
                guidance = self.guidance(width, height, hints_for(index, image), reference, opts["reference_strength"])
                batch.append((index, l_full, pixel_values, guidance))
            except (ColorizationInputError, GuidanceError) as err:
                yield index, err
                continue
            if len(batch) == batch_size:
                yield from run(batch)
                batch = []
        if batch:
            yield from run(batch)

    def colorize(self, images, batch_size: Optional[int] = None, **options):
        """One image -> one result; a list -> a list. Raises the first failed input's error (naming the
        file, for paths)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if single and isinstance(options.get("hints"), (list, tuple)):
            options = {**options, "hints": [options["hints"]]}  # one image's hint list
        results: List[object] = []
        for index, result in self.colorize_iter(items, batch_size, **options):
            if isinstance(result, Exception):
                raise _named(result, items[index])
            results.append(result)
        return results[0] if single else results

    __call__ = colorize


class _Passthrough:
    """Carries a value through the pipeline's batching untouched (it only splits tensors and arrays)."""

    def __init__(self, value):
        self.value = value


class _Hinted:
    """An input image with its own hints (the pipeline's `preprocess` sees one image at a time)."""

    def __init__(self, image, hints):
        self.image, self.hints = image, hints


class ImageColorizationPipeline(Pipeline):
    """Colorize black-and-white (or any) photos.

    ```python
    import hf_colorize  # registers the task
    from transformers import pipeline
    colorize = pipeline("image-colorization", model=hf_colorize.DEFAULT_MODEL)
    colorize("photo.jpg", temperature=0.38)          # -> PIL.Image (RGB, original size)
    colorize(["a.jpg", "b.png"], batch_size=2)      # -> [PIL.Image, PIL.Image]
    ```

    Call-time options are `Colorizer`'s: `temperature`, `decode_mode`, `size`, `seed`, `output_type`,
    `precision` ("auto", the default: bf16 on CPUs with AMX and on recent GPUs, fp16 on older tensor-core
    GPUs, fp32 elsewhere; "fp32"; "bf16" runs the convolutions under bfloat16 autocast, within ~1 ab
    unit of fp32; "fp16" for GPUs; "int8" quantized convolutions on the CPU through ONNX Runtime). Any
    option can also be given at construction: `pipeline("image-colorization", model=..., precision="bf16")`.
    Guidance: `hints=[(x, y, "#b22222"), ...]` (for a list of images, one list per image or a dict file name ->
    list), `reference=photo_or_colours`, `reference_strength=1.0` (see `Colorizer`). Unknown options raise
    `TypeError`.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = ColorizationImageProcessor(size=getattr(self.model.config, "image_size", 256))
        self.colorizer = Colorizer(self.model, self.image_processor)

    def __call__(self, images, *args, **kwargs):
        hints = kwargs.pop("hints", None)
        if hints is not None:
            check_options(hints=hints)
            if isinstance(images, (list, tuple)):
                lookup = per_image_hints(hints, list(images))
                images = [_Hinted(image, lookup(i, image)) for i, image in enumerate(images)]
            else:
                images = _Hinted(images, per_image_hints(hints, [images])(0, images) if isinstance(hints, dict) else hints)
        return super().__call__(images, *args, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        options = check_options(**kwargs)
        preprocess = {k: options[k] for k in ("size", "reference", "reference_strength") if k in options}
        if "reference" in preprocess:  # read once per call, not once per image
            preprocess["reference"] = self.colorizer.reference_distribution(preprocess["reference"])
        postprocess = {"output_type": options["output_type"]} if "output_type" in options else {}
        forward = {k: v for k, v in options.items() if k not in ("size", "output_type") + GUIDANCE_OPTIONS}
        return preprocess, forward, postprocess

    def preprocess(self, image, size: Optional[int] = None, reference=None, reference_strength=None):
        hints = None
        if isinstance(image, _Hinted):
            image, hints = image.image, image.hints
        try:
            l_full, pixel_values = self.colorizer.prepare(image, size)
            guidance = self.colorizer.guidance(l_full.shape[-1], l_full.shape[-2], hints, reference, reference_strength)
        except (ColorizationInputError, GuidanceError) as err:
            raise _named(err, image) from None
        pixel_values = pixel_values[None]
        if self.dtype is not None and self.dtype.is_floating_point:
            pixel_values = pixel_values.to(self.dtype)
        return {"pixel_values": pixel_values, "original_l": _Passthrough(l_full), "guidance": _Passthrough(guidance)}

    def _forward(self, model_inputs, **options):
        # model inputs made without guidance (e.g. by hand, as before guidance existed) have no "guidance" entry
        held = model_inputs.get("guidance")
        l_full, guidance = _held_list(model_inputs["original_l"]), _held_list(held)
        return {"ab": self.colorizer.predict_ab(model_inputs["pixel_values"], guidance=guidance, l_full=l_full, **options),
                "original_l": model_inputs["original_l"], "guidance": held}

    def postprocess(self, model_outputs, output_type: Optional[str] = None):
        ab = model_outputs["ab"]
        ab = ab[0] if ab.dim() == 4 else ab
        return self.colorizer.render(_held(model_outputs["original_l"]), ab, output_type, _held(model_outputs["guidance"]))


def _held(value):
    return value.value if isinstance(value, _Passthrough) else value


def _held_list(value) -> list:
    """The per-image values of a forward batch: one held value, or (pipeline batch_size > 1) a list of them."""
    return [_held(v) for v in value] if isinstance(value, (list, tuple)) else [_held(value)]


__all__ = ["Colorizer", "GUIDANCE_OPTIONS", "check_options", "per_image_hints", "ColorizationBackendError", "ColorizationModelError", "ImageColorizationPipeline",
           "LOGITS_BACKENDS", "OPTIONS", "PRECISIONS", "PRECISION_CHOICES", "auto_precision", "hardware_capabilities",
           "resolve_precision"]
