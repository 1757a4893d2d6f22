"""Export a colorization model to ONNX (for onnxruntime and other runtimes).

The graph takes `pixel_values` `(B, 1, H, W)` (normalized L, as the image processor makes it) and
`temperature` `(1,)`, and returns `logits` `(B, Q, H/4, W/4)` and the annealed-mean `ab` `(B, 2, H/4, W/4)`
(temperature 1 gives the plain mean; take the argmax of `logits` for the mode). Batch, height and
width are dynamic.

    hf-colorize export-onnx MODEL_DIR -o colorizer.onnx
"""

import os
import sys
import tempfile

import torch
from torch import nn


class _OnnxColorizer(nn.Module):
    """Model + annealed-mean decoding as one graph; the bins are a constant of the graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, temperature):
        logits = self.model(pixel_values=pixel_values, decode_mode="mode").logits
        probs = torch.softmax(logits / temperature.reshape(1, 1, 1, 1), dim=1)
        ab = torch.einsum("bqhw,qc->bchw", probs, self.model.ab_bins)
        return logits, ab


def export_onnx(model, path, size: int = 256, opset: int = 18) -> str:
    """Write `model` (a `ColorizationModel`) as an ONNX file at `path` (written to a temporary file and
    moved into place, so a failed export never leaves a file that looks complete). Returns `path`."""
    import onnx

    path = os.fspath(path)
    wrapper = _OnnxColorizer(model.float().eval()).eval()
    example = (torch.zeros(1, 1, size, size), torch.tensor([float(model.config.decode_temperature)]))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=parent, prefix=".export-")
    os.close(fd)
    try:
        # the torch.export-based exporter (the legacy TorchScript one mis-traced this model); height and
        # width are dynamic multiples of 8 (the network's total stride is 4, its decoder needs 8)
        batch, h8, w8 = (torch.export.Dim(n, min=1, max=4096) for n in ("batch", "height_8", "width_8"))
        kwargs = dict(input_names=["pixel_values", "temperature"], output_names=["logits", "ab"], opset_version=opset,
                      dynamic_shapes={"pixel_values": {0: batch, 2: 8 * h8, 3: 8 * w8}, "temperature": None},
                      external_data=False, verbose=False)
        with torch.no_grad():
            torch.onnx.export(wrapper, example, tmp, dynamo=True, **kwargs)
        onnx.checker.check_model(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def onnx_session(path, threads: int = 0):
    """An onnxruntime CPU session for an exported file (all graph optimizations on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, pixel_values, temperature: float = 0.38):
    """Run an exported colorizer: pixel_values `(B, 1, H, W)` -> (logits, ab) as torch tensors."""
    feeds = {"pixel_values": pixel_values.float().numpy(), "temperature": torch.tensor([float(temperature)]).numpy()}
    logits, ab = session.run(["logits", "ab"], feeds)
    return torch.from_numpy(logits), torch.from_numpy(ab)


def add_arguments(parser):
    parser.add_argument("model", nargs="?", default=None, help="model folder or Hub id (default: the embedded model)")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--size", type=int, default=256, help="example input side used for tracing (any size works after export)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check after export")


def run(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from . import DEFAULT_MODEL, ColorizationModel

    name = args.model or DEFAULT_MODEL
    if os.path.exists(args.output) and os.path.isdir(args.output):
        print(f"hf-colorize export-onnx: {args.output}: is a folder; give a file name ending in .onnx", file=sys.stderr)
        return 1
    try:
        model = ColorizationModel.from_pretrained(name).eval()
    except Exception as err:  # missing folder, bad config, bins/weights mismatch: one line
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"hf-colorize export-onnx: cannot load model {name}: {msg}", file=sys.stderr)
        return 1
    try:
        export_onnx(model, args.output, size=args.size, opset=args.opset)
    except Exception as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"hf-colorize export-onnx: export failed: {msg}", file=sys.stderr)
        return 1
    line = f"exported {name} -> {args.output}"
    if not args.no_check:
        torch.manual_seed(0)
        x = torch.rand(1, 1, args.size, args.size) - 0.5
        with torch.inference_mode():
            ref = model(x).ab
        _, ab = run_onnx(onnx_session(args.output), x, model.config.decode_temperature)
        err = (ab - ref).abs().max().item()
        line += f" (onnxruntime vs torch: max |ab| difference {err:.2e})"
        if err > 0.05:
            print(f"hf-colorize export-onnx: {args.output}: onnxruntime output differs from torch by {err:.3f} ab", file=sys.stderr)
            return 1
    print(line)
    return 0
