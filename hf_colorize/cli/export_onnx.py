"""`hf-colorize export-onnx [MODEL] -o OUT.onnx`: export a model to ONNX (`export.onnx.export_model`);
onnxruntime's output is checked against torch before the file gets its name (`--no-check` skips it)."""

import argparse

from hf_colorize.cli.args import network_size, positive_int


def add_arguments(parser) -> None:
    from hf_colorize.cli.train import require

    require("onnx", "onnxruntime", "onnxscript")
    parser.add_argument("model_path", nargs="?", default=None, metavar="MODEL",
                        help="model folder or Hub id (default: the embedded model); or --model")
    parser.add_argument("--model", default=None, help="the same as MODEL")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=positive_int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--size", type=network_size, default=256,
                        help="example input side used for tracing, a multiple of 8 (any size works after export)")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="check onnxruntime against torch before writing (default: on)")


def run(args) -> int:
    import os

    from hf_colorize import DEFAULT_MODEL
    from hf_colorize.common import UsageError, load_colorizer, shown
    from hf_colorize.export.onnx import export_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model_path and args.model and args.model_path != args.model:
        raise UsageError(f"two models given: {args.model_path} and --model {args.model}")
    if os.path.isdir(args.output):
        raise UsageError(f"--output {shown(args.output)}: is a folder; give a file name ending in .onnx")
    name = args.model_path or args.model or DEFAULT_MODEL
    model = load_colorizer(name).model  # ModelLoadError: "cannot load model NAME: cause"
    result = export_model(model, args.output, size=args.size, opset=args.opset, check=args.check)
    line = f"exported {shown(name)} -> {shown(args.output)}"
    if result["max_difference"] is not None:
        line += f" (onnxruntime vs torch: max |ab| difference {result['max_difference']:.2e})"
    print(line)
    return 0
