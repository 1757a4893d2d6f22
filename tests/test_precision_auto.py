"""precision="auto" (the default): the rule picks bf16 only where it is known to be faster than fp32 (AMX
CPUs, bf16/fp16 tensor-core GPUs), resolves once per process, is inspectable, and reaches every entry point.
The rule is tested by construction (injected capabilities), never by timing."""

import pytest
import torch
from transformers import pipeline

import hf_colorize  # noqa: F401  (registers the task)
from hf_colorize import Colorizer
from hf_colorize.models.colorization import pipeline_colorization as pc


@pytest.mark.parametrize("device, caps, expected", [
    # this session's Xeon: AVX-512 without VNNI / BF16 / AMX
    ("cpu", {"amx": False, "avx512_bf16": False}, "fp32"),
    # the Xeon: AVX512-BF16 but no AMX, where bf16 autocast measured slower than fp32
    ("cpu", {"amx": False, "avx512_bf16": True}, "fp32"),
    # Sapphire Rapids and newer: AMX tiles
    ("cpu", {"amx": True, "avx512_bf16": True}, "bf16"),
    ("cpu", {}, "fp32"),  # nothing known: the safe choice
    ("cuda", {"cuda_major": 9, "cuda_bf16": True}, "bf16"),
    ("cuda", {"cuda_major": 8, "cuda_bf16": True}, "bf16"),
    ("cuda", {"cuda_major": 7, "cuda_bf16": False}, "fp16"),
    ("cuda", {"cuda_major": 6, "cuda_bf16": False}, "fp32"),
    ("mps", {}, "fp32"),
])
def test_auto_rule(device, caps, expected):
    assert pc.auto_precision(device, caps) == expected


def test_auto_never_picks_a_path_slower_than_fp32_or_not_close():
    """Over every combination of CPU capabilities, auto gives fp32 unless AMX is present, and never int8."""
    for amx in (False, True):
        for bf16 in (False, True):
            got = pc.auto_precision("cpu", {"amx": amx, "avx512_bf16": bf16})
            assert got == ("bf16" if amx else "fp32")
    for major in range(3, 11):
        for bf16 in (False, True):
            assert pc.auto_precision("cuda", {"cuda_major": major, "cuda_bf16": bf16}) in ("fp32", "fp16", "bf16")


def test_capabilities_of_this_machine_feed_the_rule():
    caps = pc.hardware_capabilities("cpu")
    assert set(caps) == {"amx", "avx512_bf16"} and all(isinstance(v, bool) for v in caps.values())
    assert caps["amx"] == bool(torch.cpu._is_amx_tile_supported())
    assert pc.auto_precision("cpu") == ("bf16" if caps["amx"] else "fp32")


def test_auto_is_the_default_and_resolves_once_per_process(tiny_model_dir, monkeypatch):
    calls = []

    def rule(device_type, capabilities=None):
        calls.append(device_type)
        return "bf16"

    monkeypatch.setattr(pc, "_AUTO", {})
    monkeypatch.setattr(pc, "auto_precision", rule)
    colorizer = Colorizer.from_pretrained(str(tiny_model_dir))
    assert colorizer.defaults["precision"] == "auto"
    assert colorizer.resolved_precision == "bf16" and colorizer.resolve_precision("fp32") == "fp32"
    assert colorizer.resolve_precision(torch.float16) == "fp16" and colorizer.resolve_precision("float32") == "fp32"
    Colorizer.from_pretrained(str(tiny_model_dir)).resolved_precision  # noqa: B018 - a second colorizer
    assert calls == ["cpu"]  # decided once, then cached


def test_auto_output_is_the_resolved_precisions_output(tiny_model_dir, photo_paths, monkeypatch):
    """What auto runs is exactly the precision it resolves to (here forced to bf16, then to fp32)."""
    path = str(photo_paths[0])
    fp32 = pipeline("image-colorization", model=str(tiny_model_dir), precision="fp32")(path, output_type="lab")
    bf16 = pipeline("image-colorization", model=str(tiny_model_dir), precision="bf16")(path, output_type="lab")
    for forced, expected in (("bf16", bf16), ("fp32", fp32)):
        monkeypatch.setattr(pc, "_AUTO", {"cpu": forced})
        for pipe in (pipeline("image-colorization", model=str(tiny_model_dir)),  # the default
                     pipeline("image-colorization", model=str(tiny_model_dir), precision="auto")):
            assert torch.equal(pipe(path, output_type="lab"), expected)
    assert not torch.equal(fp32, bf16)  # the two really differ, so the checks above can fail


def test_cli_and_evaluation_default_to_auto_and_record_what_ran(tiny_model_dir, photo_paths, monkeypatch):
    import argparse

    from hf_colorize.cli.args import PRECISIONS, add_inference_options, inference_kwargs
    from hf_colorize.common import load_colorizer
    from hf_colorize.evaluation.protocol import evaluate_model

    assert PRECISIONS == pc.PRECISION_CHOICES
    parser = argparse.ArgumentParser()
    add_inference_options(parser)
    args = parser.parse_args([])
    assert args.precision is None  # None = the Colorizer's default
    assert load_colorizer(str(tiny_model_dir), **inference_kwargs(args)).defaults["precision"] == "auto"
    assert parser.parse_args(["--precision", "int8"]).precision == "int8"
    monkeypatch.setattr(pc, "_AUTO", {"cpu": "bf16"})
    result = evaluate_model(str(tiny_model_dir), [str(p) for p in photo_paths[:2]], limit=2, size=64)
    assert result["protocol"]["precision"] == "bf16"  # what "auto" ran as, not "auto"
    monkeypatch.setattr(pc, "_AUTO", {"cpu": "fp32"})
    result = evaluate_model(str(tiny_model_dir), [str(p) for p in photo_paths[:2]], limit=2, size=64)
    assert "precision" not in result["protocol"]


def test_bad_precision_names_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match=r"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got 'int4'"):
        Colorizer.from_pretrained(str(tiny_model_dir), precision="int4")
