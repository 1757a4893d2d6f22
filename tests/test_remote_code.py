"""Remote code: a saved folder works through transformers alone (trust_remote_code, hf_colorize not
importable, in a subprocess) with outputs identical to the installed package; and with the package
installed the same folder loads without trust_remote_code."""

import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

import hf_colorize
from hf_colorize import ColorizationImageProcessor, ImageColorizationPipeline

# Runs in a fresh interpreter with cwd = a temp dir and no PYTHONPATH; the meta path finder makes
# `import hf_colorize` fail even if the package is pip-installed (editable installs use a finder too).
BLOCK_HF_COLORIZE = textwrap.dedent(
    '''
    import importlib.abc, sys

    class BlockHfColorize(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_colorize" or name.startswith("hf_colorize."):
                raise ImportError(f"{name} is blocked: this process must work from the remote code alone")
            return None

    sys.meta_path.insert(0, BlockHfColorize())
    try:
        import hf_colorize  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("hf_colorize is importable; the test would prove nothing")
    '''
)

# hints and a reference colour: the guided path through the remote code equals the installed one
GUIDED = {"hints": [{"x": 10, "y": 12, "color": "#b22222"}, (40, 30, (30, 60, 200))], "reference": ["#2e8b57", "#87ceeb"],
          "reference_strength": 0.7}

CHILD = BLOCK_HF_COLORIZE + f"GUIDED = {GUIDED!r}\n" + textwrap.dedent(
    '''
    import os
    import numpy as np, torch
    from transformers import AutoImageProcessor, AutoModel, pipeline

    folder, photo, out = sys.argv[1], sys.argv[2], sys.argv[3]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    # saved before anything else is loaded: the fine-tune-and-save path of a remote-code user
    model.save_pretrained(f"{out}/resaved")
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    colorize = pipeline(model=folder, trust_remote_code=True)
    for obj in (model, processor, colorize):
        assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__
    assert "hf_colorize" not in sys.modules
    inputs = processor(photo)
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"])
    np.save(f"{out}/pixel_values.npy", inputs["pixel_values"].numpy())
    np.save(f"{out}/logits.npy", outputs.logits.numpy())
    np.save(f"{out}/ab.npy", outputs.ab.numpy())
    np.save(f"{out}/post.npy", np.asarray(processor.post_process_colorization(outputs, images=[photo])[0]))
    np.save(f"{out}/pipeline.npy", np.asarray(colorize(photo)))
    np.save(f"{out}/pipeline_mode.npy", colorize(photo, decode_mode="mode", output_type="np"))
    if not os.path.exists(f"{folder}/modeling_hypercolumn.py"):  # guidance: ECCV16-family models
        np.save(f"{out}/pipeline_guided.npy", colorize(photo, output_type="np", **GUIDED))
    print("ok", type(colorize).__name__)
    '''
)


@pytest.fixture(scope="module")
def photo(photo_paths, tmp_path_factory):
    """A real photo, downsized (the remote process reads it from disk)."""
    path = tmp_path_factory.mktemp("remote_photo") / "photo.png"
    with Image.open(photo_paths[1]) as im:
        im = im.convert("RGB")
    im.thumbnail((120, 120))
    im.save(path)
    return path


@pytest.fixture(params=["eccv16", "hypercolumn"])
def model_folder(request, tiny_model_dir, tiny_hypercolumn_dir):
    """Each model family's tiny saved folder."""
    return tiny_model_dir if request.param == "eccv16" else tiny_hypercolumn_dir


def _installed_outputs(folder, photo):
    """The outputs of the installed package, on one thread like the remote process (OMP_NUM_THREADS=1): another
    thread count may sum convolutions in another order, a last-bit difference that is not the remote code's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _outputs(folder, photo)
    finally:
        torch.set_num_threads(threads)


def _outputs(folder, photo):
    model = AutoModel.from_pretrained(folder).eval()
    processor = ColorizationImageProcessor.from_pretrained(folder)
    colorize = pipeline("image-colorization", model=str(folder))
    inputs = processor(str(photo))
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"])
    return {
        "pixel_values": inputs["pixel_values"].numpy(),
        "logits": outputs.logits.numpy(),
        "ab": outputs.ab.numpy(),
        "post": np.asarray(processor.post_process_colorization(outputs, images=[str(photo)])[0]),
        "pipeline": np.asarray(colorize(str(photo))),
        "pipeline_mode": colorize(str(photo), decode_mode="mode", output_type="np"),
        **({} if (folder / "modeling_hypercolumn.py").exists() else {
            "pipeline_guided": colorize(str(photo), output_type="np", **GUIDED)}),
    }


ECCV16_FILES = ("configuration_colorization", "modeling_colorization", "image_processing_colorization",
                "pipeline_colorization", "guidance_colorization")
REMOTE_FILES = ECCV16_FILES + ("configuration_hypercolumn", "modeling_hypercolumn")


def _family_files(folder):
    return REMOTE_FILES if (folder / "modeling_hypercolumn.py").exists() else ECCV16_FILES


def test_saved_folder_holds_self_contained_remote_code(model_folder):
    """The family's files are in the folder and import only each other, transformers, torch, numpy, PIL
    and the standard library."""
    allowed = {"transformers", "torch", "numpy", "PIL"} | set(sys.stdlib_module_names)
    for name in _family_files(model_folder):
        tree = ast.parse((model_folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module in REMOTE_FILES, f"{name}: from .{node.module}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                roots = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for root in roots:
                    assert root.split(".")[0] in allowed, f"{name} imports {root}"


@pytest.mark.slow
def test_remote_code_matches_installed_package(model_folder, photo, tmp_path):
    tiny_model_dir = model_folder
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "child.py", str(tiny_model_dir), str(photo), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok ImageColorizationPipeline" in proc.stdout
    for name in _family_files(tiny_model_dir):
        assert (out / "resaved" / f"{name}.py").read_text() == (tiny_model_dir / f"{name}.py").read_text(), name
    ours = _installed_outputs(tiny_model_dir, photo)
    for name, expected in ours.items():
        remote = np.load(out / f"{name}.npy")
        assert remote.shape == expected.shape, name
        np.testing.assert_array_equal(remote, expected, err_msg=name)
    with Image.open(photo) as im:
        assert ours["pipeline"].shape == (im.height, im.width, 3)


def test_installed_package_needs_no_trust_remote_code(tiny_model_dir, tiny_hypercolumn_dir, default_model_dir, photo):
    """With hf_colorize imported, a folder with (tiny models of both families) or without (embedded default)
    remote code loads through the Auto classes and the task name with trust_remote_code left unset."""
    for folder in (tiny_model_dir, tiny_hypercolumn_dir, default_model_dir):
        model = AutoModel.from_pretrained(folder)
        processor = AutoImageProcessor.from_pretrained(folder)
        colorize = pipeline("image-colorization", model=str(folder))
        family = hf_colorize.HypercolumnColorizationModel if folder == tiny_hypercolumn_dir else hf_colorize.ColorizationModel
        assert type(model) is family
        assert type(processor) is hf_colorize.ColorizationImageProcessor
        assert type(colorize) is ImageColorizationPipeline
        with Image.open(photo) as im:
            assert colorize(str(photo)).size == im.size
