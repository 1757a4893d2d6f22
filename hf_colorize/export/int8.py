"""`precision="int8"`: the network's convolutions in int8 through ONNX Runtime; decoding stays float32 torch.

How the int8 network is made (once per weights, then cached in the process and on disk):

1. the network alone (`model(..., decode=False).logits`) is exported to ONNX in float32
   (`export.onnx.export_logits`; dynamic batch, height and width);
2. its activation ranges are measured on real photos: the seven shipped in `export/calibration/`
   (public-domain samples, see the README there), or the caller's own (`calibration=`);
3. ONNX Runtime's static quantization rewrites the Conv / ConvTranspose layers as QDQ: weights int8 per
   output channel, activations uint8 per tensor. The first convolution (its input is L itself: 256 levels
   would be a 0.4 L-unit step, which moved the trained model's ab by 1-3 units) and the classifier (the
   logits the softmax sharpens) stay float32: 0.9% of the FLOPs. So does each convolution the
   calibration photos find too sensitive (`sensitive_convs`: the greedy fewest layers that bring the
   whole network's simulated rounding within `CALIBRATION_AB` ab on those photos): one layer of the
   hint-trained default, whose input has a few outlier channels that a per-tensor uint8 step cannot
   resolve (3.1 ab alone). BatchNorm and ReLU stay float, the bins and the annealed-mean decoding are
   untouched (the `Colorizer` decodes the float32 logits itself).

A hint-trained model (config `hint_inputs` / `global_hints`) quantizes too, without its hint inputs: the
graph is its network as it runs when no hints are given (exactly: the hint branches add zero then). The
logits callable refuses hints (`ColorizationBackendError`, one line: use precision fp32 or bf16), so a
hint is never silently dropped.

The file is written under the Hugging Face cache (`$HF_HOME/hf_colorize/int8/<key>.onnx`, the key a hash
of the weights, the calibration photos, the network size and these settings), so a second process loads
it in a second. `hf_colorize/__init__.py` registers `BACKEND` as the "int8" entry of the `Colorizer`'s
`LOGITS_BACKENDS`; without onnxruntime, `precision="int8"` fails with one line saying what to install.

    from hf_colorize import Colorizer
    Colorizer.from_pretrained(MODEL, precision="int8")("photo.jpg")
    # or with your own calibration photos (a folder or a list of files), written where you like:
    from hf_colorize.export.int8 import quantize_int8
    quantize_int8(model, "model-int8.onnx", calibration="my_photos/")
"""

import contextlib
import copy
import hashlib
import logging
import os
import tempfile
import threading
import warnings
from typing import Optional

import torch

from hf_colorize.common import ConversionError, atomic_path, is_image_file, one_line, shown
from hf_colorize.models.colorization.pipeline_colorization import ColorizationBackendError

__all__ = ["BACKEND", "CALIBRATION_DIR", "SimulatedRounding", "calibration_photos", "check_available", "int8_logits",
           "quantize_int8", "sensitive_convs"]

CALIBRATION_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calibration")
INSTALL = "pip install 'hf-colorize[onnx]'"
#: the simulated rounding of the whole network may move the calibration photos' ab by this much (mean);
#: the budget on held-out photos is 2 ab, so this leaves room for photos unlike the calibration ones
CALIBRATION_AB = 0.75
#: quantization settings; part of the cache key, so changing them never reuses a stale file
SETTINGS = {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor", "calibration": "minmax",
            "ops": ("Conv", "ConvTranspose"), "float": "first and last convolution, sensitive ones",
            "calibration_ab": CALIBRATION_AB, "version": 3}

_SESSIONS = {}  # cache key -> onnxruntime session (this process)
_LOCK = threading.Lock()


def check_available() -> None:
    """Raise `ColorizationBackendError` (one line: what to install) unless onnxruntime, onnx and onnxscript
    (the exporter's) can be imported."""
    missing = []
    for name in ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ColorizationBackendError(f"precision 'int8' needs {', '.join(missing)}: {INSTALL}")


def calibration_photos(calibration=None) -> list:
    """The calibration photo files: `calibration` (a folder, or a list of files / images) or the shipped ones."""
    source = CALIBRATION_DIR if calibration is None else calibration
    if isinstance(source, (str, os.PathLike)):
        folder = os.fspath(source)
        if not os.path.isdir(folder):
            raise ConversionError(f"calibration photos {shown(folder)}: no such folder")
        photos = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if is_image_file(n)]
    else:
        photos = list(source)
    if not photos:
        raise ConversionError(f"no calibration photos in {shown(source)}" if isinstance(source, (str, os.PathLike))
                              else "no calibration photos given")
    return photos


def _inputs(image_processor, photos, size):
    return [image_processor.prepare(p, size)[1][None] for p in photos]  # (1, 1, size, size) each


def _key(model, inputs, size) -> str:
    digest = hashlib.sha256(repr((SETTINGS, size, _ort_version())).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    for x in inputs:
        digest.update(x.numpy().tobytes())
    return digest.hexdigest()[:24]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def cache_dir() -> str:
    """Where quantized networks are kept: `$HF_HOME/hf_colorize/int8` (`HF_COLORIZE_INT8_CACHE` overrides)."""
    override = os.environ.get("HF_COLORIZE_INT8_CACHE")
    if override:
        return override
    from huggingface_hub import constants

    return os.path.join(constants.HF_HOME, "hf_colorize", "int8")


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantizer log advice (torchvision ops, "consider pre-processing") through
    logging and warnings: not for our users, whose terminal shows only our own lines."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _weight_names(path) -> dict:
    """Convolution node name -> the module name of its weight (the exporter names initializers
    `model.<module>.weight`, the wrapper's attribute first)."""
    import onnx

    return {n.name: n.input[1].split(".", 1)[-1].rsplit(".", 1)[0]
            for n in onnx.load(path).graph.node if n.op_type in SETTINGS["ops"]}


def _first_and_last_conv(path) -> list:
    """Names of the convolution reading the graph's input and of the one writing its output (the logits)."""
    import onnx

    graph = onnx.load(path).graph
    convs = [n for n in graph.node if n.op_type in SETTINGS["ops"]]
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    first = next((n for n in convs if inputs & set(n.input)), convs[0])
    last = next((n for n in convs if outputs & set(n.output)), convs[-1])
    return [first.name, last.name]


def _fake_weight(w: torch.Tensor, axis: int) -> torch.Tensor:
    """`w` rounded to symmetric int8 per slice along `axis` (per output channel), as the quantizer does."""
    dims = [d for d in range(w.dim()) if d != axis]
    scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127
    return (w / scale).round().clamp(-127, 127) * scale


def _convs(model) -> list:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


class SimulatedRounding:
    """`model`'s convolutions rounded in torch as the QDQ graph rounds them: int8 weights per output channel,
    uint8 inputs per tensor over their MinMax range on `calib` `(B, 1, H, W)` (measured once, here).
    `model` (float32) is never changed."""

    def __init__(self, model, calib: torch.Tensor):
        self.model, self.calib, self.ranges = model, calib, {}
        convs = [c for _, c in _convs(model)]

        def record(i, x):
            lo, hi = self.ranges.get(i, (0.0, 0.0))  # the quantizer's range always holds 0
            self.ranges[i] = (min(lo, x.min().item()), max(hi, x.max().item()))

        hooks = [c.register_forward_pre_hook(lambda mod, inp, i=i: record(i, inp[0])) for i, c in enumerate(convs)]
        try:
            self._calib_ab = self._ab(model, calib)
        finally:
            for h in hooks:
                h.remove()

    def _ab(self, model, x):
        from hf_colorize.models.colorization.modeling_colorization import decode_ab

        with torch.no_grad():
            return decode_ab(model(pixel_values=x, decode=False).logits, self.model.ab_bins, "mean")

    def ab_change(self, layers, held: Optional[torch.Tensor] = None, weights: bool = True, activations: bool = True) -> float:
        """Mean |ab| change (plain-mean decoding) on `held` (default the calibration photos) when the
        convolutions `layers` (indices into the model's convolutions, module order) are rounded.
        Convolutions that do not run (hint branches, without hints) are left alone."""
        m = copy.deepcopy(self.model).eval()
        convs = [c for _, c in _convs(m)]
        for i in layers:
            if i not in self.ranges:
                continue
            c = convs[i]
            if weights:
                c.weight.data = _fake_weight(c.weight.data, 1 if isinstance(c, torch.nn.ConvTranspose2d) else 0)
            if activations:
                lo, hi = self.ranges[i]
                step, zero = max(hi - lo, 1e-8) / 255, round(-lo / max(hi - lo, 1e-8) * 255)
                c.register_forward_pre_hook(lambda mod, inp, s=step, z=zero: ((inp[0] / s + z).round().clamp(0, 255) - z) * s)
        x = self.calib if held is None else held
        exact = self._calib_ab if held is None else self._ab(self.model, held)
        return (exact - self._ab(m, x)).abs().mean().item()


def sensitive_convs(model, inputs, budget: float = CALIBRATION_AB, always_float=()) -> list:
    """Module names of the convolutions to keep float beyond `always_float` (module names): the most
    sensitive first (each one's own rounding on `inputs`, a list of `(1, 1, H, W)`), until rounding all the
    others moves the photos' ab by at most `budget`. Fewest float layers, not least error: int8 is for speed."""
    rounding = SimulatedRounding(model, torch.cat(inputs))
    names = [n for n, _ in _convs(model)]
    candidates = [i for i, n in enumerate(names) if n not in always_float]
    if rounding.ab_change(candidates) <= budget:
        return []
    alone = sorted(((rounding.ab_change([i]), i) for i in candidates), reverse=True)
    chosen = []
    for change, i in alone:
        if change <= 0:  # not run (hint branches) or already exact: keeping it float buys nothing
            break
        chosen.append(i)
        if rounding.ab_change([j for j in candidates if j not in chosen]) <= budget:
            break
    return [names[i] for i in chosen]


def _quantize(model, path, inputs, size) -> str:
    """Export `model`'s network, calibrate on `inputs` and write the int8 QDQ graph at `path` (atomically)."""
    check_available()
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    from hf_colorize.export.onnx import export_logits

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"pixel_values": x.float().numpy()} for x in inputs])

        def get_next(self):
            return next(self._it, None)

    # a float32, contiguous copy: exporting must not change the caller's model (dtype, channels_last)
    network = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).eval()
    with tempfile.TemporaryDirectory(prefix="hf-colorize-int8-") as tmp, _quiet():
        fp32 = export_logits(network, os.path.join(tmp, "fp32.onnx"), size=size)
        float_convs = _first_and_last_conv(fp32)
        modules = _weight_names(fp32)
        sensitive = set(sensitive_convs(network, inputs, always_float=[modules[n] for n in float_convs]))
        extra = [node for node, module in modules.items() if module in sensitive]
        if len(extra) != len(sensitive):  # an exporter that names weights otherwise: say so, never quantize them
            raise ConversionError(f"int8 quantization: cannot find the convolutions {sorted(sensitive)} in the exported graph")
        float_convs += extra
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with atomic_path(path, fsync=False) as out:
                quantize_static(fp32, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=list(SETTINGS["ops"]), nodes_to_exclude=float_convs,
                                calibrate_method=CalibrationMethod.MinMax)
        except OSError as err:
            raise ConversionError(f"cannot write {shown(path)}: {err.strerror or one_line(err)}") from None
        except Exception as err:  # noqa: BLE001 - onnxruntime's quantizer raises many types; one line
            raise ConversionError(f"int8 quantization failed: {one_line(err)}") from None
    return os.fspath(path)


def quantize_int8(model, path, calibration=None, size: Optional[int] = None, image_processor=None) -> str:
    """Write `model`'s network (a `ColorizationModel`) as an int8 ONNX graph at `path`, calibrated on
    `calibration` (a folder or a list of photos; default the shipped ones) at network size `size`
    (default the image processor's, i.e. the model's `image_size`). Returns `path`. Inputs
    `pixel_values` `(B, 1, H, W)`, output float32 `logits`. Raises `ConversionError` (one line)."""
    from hf_colorize import ColorizationImageProcessor

    processor = image_processor or ColorizationImageProcessor(size=getattr(model.config, "image_size", 256))
    size = int(size or processor.size)
    return _quantize(model, path, _inputs(processor, calibration_photos(calibration), size), size)


def _session(path):
    from hf_colorize.export.onnx import onnx_session

    # torch's threads and these share the cores: ORT's must not spin between the Colorizer's calls
    return onnx_session(path, threads=torch.get_num_threads(), spinning=False)


def int8_logits(model, image_processor, calibration=None, size: Optional[int] = None, cache: Optional[str] = None):
    """A callable `pixel_values (B, 1, H, W) -> float32 logits (B, Q, H/4, W/4)` running `model`'s network
    in int8 (hint keyword arguments raise `ColorizationBackendError`: the graph has no hint inputs): the quantized graph is taken from this process's cache, else from `cache` (default
    `cache_dir()`), else built (`quantize_int8`) and saved there."""
    check_available()
    size = int(size or image_processor.size)
    inputs = _inputs(image_processor, calibration_photos(calibration), size)
    key = _key(model, inputs, size)
    with _LOCK:  # one build at a time per process (e.g. the Space's concurrent first requests)
        session = _SESSIONS.get(key)
        if session is None:
            path = os.path.join(cache or cache_dir(), f"{key}.onnx")
            if not os.path.isfile(path):
                _quantize(model, path, inputs, size)
            try:
                session = _session(path)
            except Exception:  # noqa: BLE001 - a corrupt cached file: rebuild it once
                os.remove(path)
                session = _session(_quantize(model, path, inputs, size))
            if len(_SESSIONS) >= 4:
                _SESSIONS.pop(next(iter(_SESSIONS)))
            _SESSIONS[key] = session

    def logits(pixel_values: torch.Tensor, hint_ab=None, hint_mask=None, global_hint=None) -> torch.Tensor:
        given = [n for n, v in (("hint_ab", hint_ab), ("hint_mask", hint_mask), ("global_hint", global_hint)) if v is not None]
        if given:
            raise ColorizationBackendError(f"precision 'int8' runs the network without its hint inputs ({', '.join(given)} "
                                           "given): use precision 'fp32' or 'bf16' for hints")
        (out,) = session.run(["logits"], {"pixel_values": pixel_values.float().contiguous().numpy()})
        return torch.from_numpy(out)

    return logits


class _Backend:
    """The "int8" entry of `pipeline_colorization.LOGITS_BACKENDS`."""

    @staticmethod
    def check() -> None:
        check_available()

    @staticmethod
    def create(model, image_processor):
        return int8_logits(model, image_processor)


BACKEND = _Backend()
