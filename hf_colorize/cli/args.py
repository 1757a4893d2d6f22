"""Argument types and the option groups several commands share, so one flag has one spelling everywhere."""

import argparse
import math

from hf_colorize.models.colorization.configuration_colorization import DECODE_MODES
# the Colorizer's `PRECISION_CHOICES`, spelled out so that --help need not import the pipeline (tested equal)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def int_in(lo: int, hi: int):
    """An argparse type: an integer in lo..hi."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {text}")
        return value

    return parse


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def network_size(text: str) -> int:
    value = positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"must be a multiple of 8, got {text}")
    return value


def add_inference_options(parser, batch_size: int = 4, device_default: str = None, fading: bool = True) -> None:
    """The options of the one inference path (`Colorizer`): --model, --temperature, --decode-mode (alias
    --decode), --size, --precision, --device, --batch-size, and for hue/chroma hypercolumn models
    --chromatic-fading/--no-chromatic-fading and --fading-eta (unless `fading=False`). Unset ones take the
    model's defaults."""
    group = parser.add_argument_group("colorization")
    group.add_argument("--model", metavar="M", default=None,
                       help="model folder or Hub id (default: the embedded model, hf_colorize.DEFAULT_MODEL)")
    group.add_argument("--temperature", type=positive_float, metavar="T",
                       help="annealed-mean temperature: lower is towards the most likely colour, 1 is the mean (default: the model's "
                            "decode_temperature; the embedded model's is 0.25)")
    group.add_argument("--decode-mode", "--decode", dest="decode_mode", choices=DECODE_MODES, metavar="MODE",
                       help=f"decoding of the bin distribution: {', '.join(DECODE_MODES)} (default: the model's)")
    group.add_argument("--size", type=network_size, metavar="N",
                       help="network input side, a multiple of 8 (default: the model's image_size)")
    group.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="auto (default: bf16 on CPUs with AMX and on recent GPUs, fp16 on older GPUs, else fp32), "
                            "fp32, bf16, fp16, or int8 (quantized, CPU, needs onnxruntime: pip install "
                            "'hf-colorize[onnx]'; the first use quantizes the model, then it is cached)")
    group.add_argument("--device", default=device_default, help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="B",
                       help=f"images per forward pass (default {batch_size})")
    if fading:
        add_fading_options(group)


def inference_kwargs(args) -> dict:
    """The `load_colorizer` keyword arguments of `add_inference_options`' flags."""
    return {"device": args.device or "cpu", "batch_size": args.batch_size, "temperature": args.temperature,
            "decode_mode": args.decode_mode, "size": args.size, "precision": args.precision,
            **{k: getattr(args, k) for k in ("chromatic_fading", "fading_eta") if getattr(args, k, None) is not None}}


def add_fading_options(group) -> None:
    """--chromatic-fading/--no-chromatic-fading and --fading-eta: hue/chroma hypercolumn models only
    (default: the model's config; giving them for another model is an error)."""
    group.add_argument("--chromatic-fading", action=argparse.BooleanOptionalAction, default=None,
                       help="hue/chroma hypercolumn models: fade uncertain hues towards gray (default: the model's)")
    group.add_argument("--fading-eta", type=positive_float, default=None, metavar="ETA",
                       help="chromatic fading threshold on |z| of the hue histogram (default: the model's, 0.03)")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (0 turns the option off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_guidance_options(parser, hints_help: str) -> None:
    """--hints FILE (what it holds: `hints_help`), --reference REF and --reference-strength S (see
    `guidance_colorization`): guided colorization."""
    group = parser.add_argument_group("guidance")
    group.add_argument("--hints", metavar="FILE", default=None, help=hints_help)
    group.add_argument("--reference", metavar="REF", default=None,
                       help="a colour photo (or a colour, e.g. '#2e8b57') whose colours guide every image")
    group.add_argument("--reference-strength", type=non_negative_float, default=None, metavar="S",
                       help="how strongly the reference's colours replace the model's prior (default 0.5; 0 = off)")


def read_hints_file(path: str):
    """The JSON of a --hints file (a list of hints, or a mapping of names to lists), or `UsageError` in one line."""
    import json

    from hf_colorize.common import UsageError, shown

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise UsageError(f"--hints {shown(path)}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--hints {shown(path)}: not valid JSON ({err})") from None
    if not isinstance(data, (list, dict)):
        raise UsageError(f"--hints {shown(path)}: expected a list of hints or a mapping of names to lists, "
                         f"got {type(data).__name__}")
    return data

