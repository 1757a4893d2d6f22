"""Export a colorization model to ONNX (for onnxruntime and other runtimes).

The graph takes `pixel_values` `(B, 1, H, W)` (normalized L, as the image processor makes it) and
`temperature` `(1,)`, and returns `logits` `(B, Q, H/4, W/4)` (the network's output, `model(...,
decode=False)`) and the annealed-mean `ab` `(B, 2, H/4, W/4)`, decoded in the graph by the model's own
`decode` (temperature 1 gives the plain mean; take the argmax of `logits` for the mode). Batch, height
and width are dynamic (height and width multiples of 8).

A hint-trained model (config `hint_inputs` / `global_hints`) gets those inputs too, after `temperature`:
`hint_ab` `(B, 2, H, W)` and `hint_mask` `(B, 1, H, W)`, and/or `global_hint` `(B, Q)`, as its `forward`
takes them (all zeros: no hints; `run_onnx` feeds zeros for those not given). `export_logits` (the int8
path's graph) is the network without hint inputs: exactly a hint model's output when no hints are given.

    hf-colorize export-onnx MODEL_DIR -o colorizer.onnx
"""

import os
from typing import Optional

import torch
from torch import nn

from hf_colorize.common import ConversionError, atomic_path, one_line, shown

__all__ = ["export_onnx", "export_model", "export_logits", "onnx_session", "run_onnx", "parity_error", "hint_input_names",
           "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 0.05  # ab units: the largest onnxruntime-vs-torch difference `check` accepts


def hint_input_names(model) -> tuple:
    """The hint inputs of `model`'s graph, in order: ("hint_ab", "hint_mask") with `config.hint_inputs`,
    "global_hint" with `config.global_hints`; () for other models."""
    names = ("hint_ab", "hint_mask") if getattr(model.config, "hint_inputs", False) else ()
    return names + (("global_hint",) if getattr(model.config, "global_hints", False) else ())


def _hint_shapes(model, batch: int, height: int, width: int) -> dict:
    return {"hint_ab": (batch, 2, height, width), "hint_mask": (batch, 1, height, width),
            "global_hint": (batch, model.config.num_bins)}


class _OnnxColorizer(nn.Module):
    """The network and its annealed-mean decoding as one graph. Decoding is `model.decode` (traceable
    torch): the logits divided by the live `temperature` input, decoded at T = 1, which is exactly the
    annealed mean at `temperature`. The bins become a constant of the graph. The hint inputs (if the model
    has any) follow `temperature`, in `hint_input_names` order."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.hint_names = hint_input_names(model)

    def forward(self, pixel_values, temperature, *hints):
        logits = self.model(pixel_values=pixel_values, decode=False, **dict(zip(self.hint_names, hints))).logits
        ab = self.model.decode(logits / temperature.reshape(1, 1, 1, 1), temperature=1.0, decode_mode="annealed_mean",
                               **_decode_inputs(self.model, pixel_values))
        return logits, ab


def _decode_inputs(model, pixel_values) -> dict:
    """What `model.decode` needs besides the logits: hue/chroma hypercolumn models convert their colours at
    the network input's lightness."""
    return {"pixel_values": pixel_values} if getattr(model, "decode_needs_input", False) else {}


class _OnnxLogits(nn.Module):
    """The network alone (`model(..., decode=False).logits`): what the int8 path quantizes; decoding stays
    in float32 torch."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values, decode=False).logits


def _dynamic_shapes(names, hint_names=()):
    """Batch and height/width as dynamic multiples of 8 (the network's total stride is 4, its decoder needs 8);
    the hint maps share them, the global hint the batch. `torch.export` takes the shapes of the forward's
    variadic `*hints` as one tuple under its name."""
    batch, h8, w8 = (torch.export.Dim(n, min=1, max=4096) for n in ("batch", "height_8", "width_8"))
    image = {0: batch, 2: 8 * h8, 3: 8 * w8}
    shapes = {"pixel_values": image, **{n: None for n in names}}
    if hint_names:
        shapes["hints"] = tuple(image if n != "global_hint" else {0: batch} for n in hint_names)
    return shapes


def export_logits(model, path, size: int = 256, opset: int = 18) -> str:
    """Write the network alone as ONNX at `path` (input `pixel_values` `(B, 1, H, W)`, output `logits`;
    dynamic batch, height and width), float32 and contiguous like `export_model`. Raises `ConversionError`."""
    import onnx

    path = os.fspath(path)
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    try:
        with atomic_path(path, fsync=False) as tmp, torch.no_grad():
            torch.onnx.export(_OnnxLogits(model).eval(), (torch.zeros(1, 1, size, size),), tmp, dynamo=True,
                              input_names=["pixel_values"], output_names=["logits"], opset_version=opset,
                              external_data=False, verbose=False, dynamic_shapes=_dynamic_shapes(()))
            onnx.checker.check_model(tmp)
    except OSError as err:
        raise ConversionError(f"cannot write {shown(path)}: {err.strerror or one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; one line
        raise ConversionError(f"export failed: {one_line(err)}") from None
    return path


def _check_temperature(model) -> float:
    """The temperature whose annealed mean is the model's own decoding (for the parity check)."""
    return 1.0 if model.config.decode_mode == "mean" else float(model.config.decode_temperature)


def _random_hints(model, size: int, generator) -> dict:
    """Seeded hints for the parity check: ~2% of the pixels hinted, a random global distribution."""
    hints = {}
    if getattr(model.config, "hint_inputs", False):
        mask = (torch.rand(1, 1, size, size, generator=generator) < 0.02).float()
        hints["hint_ab"] = (torch.rand(1, 2, size, size, generator=generator) - 0.5) * 160 * mask
        hints["hint_mask"] = mask
    if getattr(model.config, "global_hints", False):
        hints["global_hint"] = torch.softmax(3 * torch.randn(1, model.config.num_bins, generator=generator), dim=1)
    return hints


def parity_error(model, session, size: int = 256, seed: int = 0) -> float:
    """Largest |ab| difference between onnxruntime and torch (`model`'s logits decoded by `model.decode`,
    annealed mean) on a seeded random input of `size` (and seeded random hints, for a hint-trained model);
    the logits are compared too (their largest difference is returned when larger)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, size, size, generator=generator) - 0.5
    hints = _random_hints(model, size, generator)
    temperature = _check_temperature(model)
    with torch.inference_mode():
        logits = model(pixel_values=x, decode=False, **hints).logits
        ref = model.decode(logits, temperature=temperature, decode_mode="annealed_mean", **_decode_inputs(model, x))
    ort_logits, ab = run_onnx(session, x, temperature, **hints)
    return max((ab - ref).abs().max().item(), (ort_logits - logits).abs().max().item())


def export_onnx(model, path, size: int = 256, opset: int = 18, check: bool = False,
                tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Write `model` (a `ColorizationModel`) as an ONNX file at `path`, atomically (`common.atomic_path`:
    a failed export, or one that fails `check`, never leaves a file that looks complete). With `check`,
    onnxruntime must reproduce the torch output within `tolerance` ab units. Returns `path`. Raises
    `ConversionError` (one line)."""
    return export_model(model, path, size=size, opset=opset, check=check, tolerance=tolerance)["path"]


def export_model(model, path, size: int = 256, opset: int = 18, check: bool = True,
                 tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """`export_onnx`, returning `{"path", "max_difference"}` (None without `check`). `model`: a
    `ColorizationModel` (its weights are exported in float32, contiguous layout)."""
    import onnx

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConversionError(f"{shown(path)}: is a folder; give a file name ending in .onnx")
    if size < 8 or size % 8:
        raise ConversionError(f"the example size must be a positive multiple of 8, got {size}")
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    wrapper = _OnnxColorizer(model).eval()
    hint_names = wrapper.hint_names
    shapes = _hint_shapes(model, 1, size, size)
    example = (torch.zeros(1, 1, size, size), torch.tensor([float(model.config.decode_temperature)]),
               *(torch.zeros(shapes[n]) for n in hint_names))
    difference = None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_path(path) as tmp:
            # the torch.export-based exporter (the legacy TorchScript one mis-traced this model)
            kwargs = dict(input_names=["pixel_values", "temperature", *hint_names], output_names=["logits", "ab"],
                          opset_version=opset, external_data=False, verbose=False,
                          dynamic_shapes=_dynamic_shapes(("temperature",), hint_names))
            try:
                with torch.no_grad():
                    torch.onnx.export(wrapper, example, tmp, dynamo=True, **kwargs)
                onnx.checker.check_model(tmp)
            except OSError:
                raise
            except Exception as err:  # noqa: BLE001 - the exporter raises many types; one line
                raise ConversionError(f"export failed: {one_line(err)}") from None
            if check:
                difference = parity_error(model, onnx_session(tmp), size)
                if not difference <= tolerance:
                    raise ConversionError(f"{shown(path)}: onnxruntime output differs from torch by {difference:.3f} "
                                          f"(more than {tolerance}); nothing written")
    except OSError as err:
        raise ConversionError(f"cannot write {shown(path)}: {err.strerror or one_line(err)}") from None
    return {"path": path, "max_difference": difference}


def onnx_session(path, threads: int = 0, spinning: bool = True):
    """An onnxruntime CPU session for an exported file (all graph optimizations on). `spinning=False`:
    idle threads sleep instead of spinning after each run (they would take the cores from torch, or from
    other processes, between calls)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, pixel_values, temperature: Optional[float] = 0.38, hint_ab=None, hint_mask=None, global_hint=None):
    """Run an exported colorizer: pixel_values `(B, 1, H, W)` -> (logits, ab) as torch tensors. A graph with
    hint inputs gets the hints given (zeros, i.e. no hints, for those left out); hints for a graph without
    those inputs raise `ValueError` (one line)."""
    feeds = {"pixel_values": pixel_values.float().numpy(), "temperature": torch.tensor([float(temperature)]).numpy()}
    given = {"hint_ab": hint_ab, "hint_mask": hint_mask, "global_hint": global_hint}
    declared = {i.name: i.shape for i in session.get_inputs()}
    for name, value in given.items():
        if name not in declared:
            if value is not None:
                raise ValueError(f"{name}: this ONNX graph has no {name} input (exported from a model without it)")
            continue
        if value is None:
            b, _, h, w = pixel_values.shape
            value = torch.zeros((b, declared[name][1]) if name == "global_hint" else (b, 2 if name == "hint_ab" else 1, h, w))
        feeds[name] = value.float().contiguous().numpy()
    logits, ab = session.run(["logits", "ab"], feeds)
    return torch.from_numpy(logits), torch.from_numpy(ab)
