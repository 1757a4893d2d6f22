"""Publish a model folder to the Hub in one commit (`hf-colorize push`; `push_to_hub` from Python).

The upload folder holds the weights and configs, the family's remote-code files of the installed package
(so `trust_remote_code=True` works without hf-colorize), a generated model card, example images
(public-domain `skimage.data` photos in gray and as colorized by the model) and, when given, the
evaluation JSON and its AuC plot. `dry_run_dir` writes exactly that folder and uploads nothing.
The token follows huggingface_hub conventions (`token=`, `HF_TOKEN`, `hf auth login`) and is never printed.
Failures raise `HubError` (one line), bad arguments `UsageError`.
"""

import json
import os
import shutil
import sys
import tempfile
from typing import Optional

from hf_colorize.common import (
    HubError,
    ModelLoadError,
    UsageError,
    atomic_path,
    load_colorizer,
    one_line,
    shown,
    write_json,
)

REMOTE_CODE_FILES = (
    "configuration_colorization.py",
    "modeling_colorization.py",
    "image_processing_colorization.py",
    "pipeline_colorization.py",
    "guidance_colorization.py",
)
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_colorization.ColorizationConfig",
    "AutoModel": "modeling_colorization.ColorizationModel",
}
PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_colorization.ColorizationImageProcessor"}
# model_type -> (config auto_map, remote-code files): each family's set; the hypercolumn family shares the
# processor and pipeline files and imports the ECCV16 decoder
FAMILIES = {
    "colorization": (CONFIG_AUTO_MAP, REMOTE_CODE_FILES),
    "hypercolumn-colorization": (
        {"AutoConfig": "configuration_hypercolumn.HypercolumnConfig",
         "AutoModel": "modeling_hypercolumn.HypercolumnColorizationModel"},
        REMOTE_CODE_FILES + ("configuration_hypercolumn.py", "modeling_hypercolumn.py"),
    ),
}
EXAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea")  # public domain, shipped inside scikit-image
EXAMPLE_MAX_SIDE = 512
EVAL_FILE = "eval_results.json"  # in the upload, and read from the model folder when no results are given

HubPushError = HubError  # the name of version 0.1


def remote_code_dir() -> str:
    """The folder of the installed remote-code files (`models/colorization/`)."""
    from hf_colorize.models.colorization import modeling_colorization

    return os.path.dirname(os.path.abspath(modeling_colorization.__file__))


# --------------------------------------------------------------------------------------------------
# The upload folder
# --------------------------------------------------------------------------------------------------
def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        raise HubError(f"{shown(path)}: cannot read JSON: {err.strerror if isinstance(err, OSError) and err.strerror else one_line(err)}") from None


def check_model_dir(model_dir) -> list:
    """The weight files of a saved model folder; `HubError` naming what is missing."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise HubError(f"{shown(model_dir)}: " + ("not a folder" if os.path.exists(model_dir) else "no such model folder"))
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise HubError(f"{shown(model_dir)}: no config.json (not a saved model folder)")
    weights = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors") or f == "model.safetensors.index.json")
    if not any(f.endswith(".safetensors") for f in weights):
        raise HubError(f"{shown(model_dir)}: no .safetensors weights")
    return weights


_check_model_dir = check_model_dir


def _write_examples(model_dir, folder: str, warn=None) -> list:
    """Colorize the gray versions of a few `skimage.data` photos with the model of `model_dir`, through
    the one inference path (`common.load_colorizer`, then the `Colorizer`), into `folder/examples/`.
    Without scikit-image there are no examples; `warn(message)` is told so."""
    import numpy as np
    from PIL import Image

    try:
        import skimage.data
    except ImportError:
        (warn or (lambda m: print(f"hf-colorize: warning: {m}", file=sys.stderr)))(
            "scikit-image is not installed; the card will have no example images")
        return []
    colorizer = load_colorizer(model_dir)  # ModelLoadError: one line naming the folder
    os.makedirs(os.path.join(folder, "examples"), exist_ok=True)
    examples = []
    for name in EXAMPLE_PHOTOS:
        photo = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        photo.thumbnail((EXAMPLE_MAX_SIDE, EXAMPLE_MAX_SIDE), Image.BICUBIC)
        gray = photo.convert("L")
        colorized = colorizer(gray)
        entry = {"name": name, "input": f"examples/{name}_gray.jpg", "output": f"examples/{name}_colorized.jpg"}
        gray.save(os.path.join(folder, entry["input"]), quality=90)
        colorized.save(os.path.join(folder, entry["output"]), quality=90)
        examples.append(entry)
    return examples


def build_upload_folder(
    model_dir,
    out_dir,
    repo_id: Optional[str] = None,
    evaluation: Optional[dict] = None,
    training: Optional[dict] = None,
    license: Optional[str] = None,
    examples: bool = True,
) -> list:
    """Write everything to upload into the empty or new folder `out_dir`; return its files (relative, sorted).

    `evaluation`: the `hf-colorize evaluate --json` dict (card metrics, eval_results.json, eval_auc.png).
    Raises `HubError` (one line).
    """
    import hf_colorize
    from hf_colorize.evaluation.protocol import plot_auc_curves
    from hf_colorize.hub.cards import build_model_card

    model_dir, out_dir = os.fspath(model_dir), os.fspath(out_dir)
    weights = check_model_dir(model_dir)
    os.makedirs(out_dir, exist_ok=True)
    for name in weights:
        shutil.copyfile(os.path.join(model_dir, name), os.path.join(out_dir, name))
    # configs: make sure they point at the shipped remote code, whatever saved them
    config = _read_json(os.path.join(model_dir, "config.json"))
    if config.get("model_type") not in FAMILIES:
        raise HubError(f"{shown(model_dir)}: config.json is not a colorization model (model_type {config.get('model_type')!r})")
    from hf_colorize.models.colorization.modeling_colorization import _CUSTOM_PIPELINES

    auto_map, code_files = FAMILIES[config["model_type"]]
    config["auto_map"] = dict(auto_map)
    config["custom_pipelines"] = _CUSTOM_PIPELINES
    write_json(os.path.join(out_dir, "config.json"), config)
    proc_path = os.path.join(model_dir, "preprocessor_config.json")
    if os.path.isfile(proc_path):
        processor = _read_json(proc_path)
    else:
        processor = hf_colorize.ColorizationImageProcessor(size=config.get("image_size", 256)).to_dict()
    processor["auto_map"] = dict(PROCESSOR_AUTO_MAP)
    processor["image_processor_type"] = "ColorizationImageProcessor"
    write_json(os.path.join(out_dir, "preprocessor_config.json"), processor)
    code_dir = remote_code_dir()
    for name in code_files:
        shutil.copyfile(os.path.join(code_dir, name), os.path.join(out_dir, name))

    try:
        example_list = _write_examples(model_dir, out_dir) if examples else []
    except ModelLoadError as err:  # "cannot load model DIR: cause"
        raise HubError(one_line(err)) from None
    except OSError as err:
        raise HubError(f"cannot write the example images: {err.strerror or one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - the weights load but do not run: a broken model folder
        raise HubError(f"{shown(model_dir)}: the model does not run: {one_line(err)}") from None
    eval_plot = None
    if evaluation:
        write_json(os.path.join(out_dir, EVAL_FILE), evaluation)
        if evaluation.get("curves"):
            eval_plot = "eval_auc.png"
            plot_auc_curves(evaluation, os.path.join(out_dir, eval_plot))
    card = build_model_card(model_dir, repo_id=repo_id, evaluation=evaluation, training=training,
                            examples=example_list, license=license, eval_plot=eval_plot)  # HubError
    card.save(os.path.join(out_dir, "README.md"))
    return list_files(out_dir)


def list_files(folder) -> list:
    out = []
    for root, _, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/") for f in files]
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# Pushing
# --------------------------------------------------------------------------------------------------
def _offline() -> bool:
    # read at call time, with huggingface_hub's truthy values
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _redacted(err: BaseException, token: Optional[str]) -> str:
    """`one_line(err)`, never showing the token."""
    text = one_line(err)
    return text.replace(token, "***") if token else text


def _describe_failure(err: BaseException, token: Optional[str]) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE); unset it to push"
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        hint = " (check the token's write access)" if status in (401, 403) else ""
        return f"the Hub refused the upload{hint}: {_redacted(err, token)}"
    module = type(err).__module__ or ""
    if module.startswith(("httpx", "requests", "urllib3")) or isinstance(err, (ConnectionError, TimeoutError)):
        return f"cannot reach the Hugging Face Hub ({type(err).__name__}: {_redacted(err, token)})"
    return f"push failed ({type(err).__name__}: {_redacted(err, token)})"


def _load_evaluation(eval_results):
    if eval_results is None or isinstance(eval_results, dict):
        return eval_results
    data = _read_json(os.fspath(eval_results))
    if not isinstance(data, dict) or "results" not in data or "model" not in data.get("results", {}):
        raise HubError(f"{shown(eval_results)}: not an `hf-colorize evaluate --json` file (no results.model)")
    return data


def validate_repo_id(repo_id, flag: str = "--repo-id") -> str:
    """Check a Hub model id (`user/name`) with huggingface_hub's own validator, before any work;
    `UsageError` (exit code 2) naming `flag` otherwise."""
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UsageError(f"{flag} {repo_id!r} must look like user/name")
    try:
        hub_validate(repo_id)
    except (HFValidationError, ValueError) as err:
        raise UsageError(f"{flag} {repo_id!r} is not a valid Hub repo id: {one_line(err)}") from None
    return repo_id


_validate_repo_id = validate_repo_id


def check_can_push(token: Optional[str] = None) -> str:
    """The token an upload would use; `HubError` when nothing can be uploaded (offline mode, no token).
    Checked before building the upload, and by `train --push-to-hub` before training."""
    if _offline():
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it, or use --dry-run OUT_DIR")
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token")
    return token


def check_dry_run_dir(dry_run_dir) -> str:
    """The absolute dry-run folder; `UsageError` unless it is new (in an existing folder) or empty."""
    path = os.path.abspath(os.fspath(dry_run_dir))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UsageError(f"--dry-run {shown(path)}: already exists and is not an empty folder")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise UsageError(f"--dry-run {shown(path)}: the folder {shown(parent)} does not exist")
    return path


def push_to_hub(
    model_dir,
    repo_id: str,
    private: bool = False,
    token: Optional[str] = None,
    eval_results=None,
    dry_run_dir=None,
    commit_message: Optional[str] = None,
    training: Optional[dict] = None,
    license: Optional[str] = None,
) -> str:
    """Publish `model_dir` as `repo_id` in a single commit; return the commit URL (or, with
    `dry_run_dir`, the folder written instead of uploading).

    eval_results: an evaluation dict or the path of `hf-colorize evaluate --json` output (default:
    `model_dir/eval_results.json` if it exists).
    Raises `UsageError` (a bad repo id or dry-run folder) or `HubError` (one line) on any failure,
    before anything is uploaded where it can; local files are never modified.
    """
    model_dir = os.fspath(model_dir)
    validate_repo_id(repo_id)
    if dry_run_dir is not None:
        dry_run_dir = check_dry_run_dir(dry_run_dir)
    check_model_dir(model_dir)
    if eval_results is None and os.path.isfile(os.path.join(model_dir, EVAL_FILE)):
        eval_results = os.path.join(model_dir, EVAL_FILE)  # measured metrics shipped with the model
    evaluation = _load_evaluation(eval_results)
    return publish(lambda folder: build_upload_folder(model_dir, folder, repo_id, evaluation, training, license),
                   repo_id, private=private, token=token, dry_run_dir=dry_run_dir,
                   commit_message=commit_message or "Upload colorization model with hf-colorize")


def publish(build, repo_id: str, *, commit_message: str, repo_type: Optional[str] = None, private: bool = False,
            token: Optional[str] = None, dry_run_dir=None) -> str:
    """The one upload path of model and dataset pushes: `build(folder)` writes the files of the commit into
    `folder` and returns them (relative paths). With `dry_run_dir` (checked by `check_dry_run_dir`) that
    folder is written, complete or absent, and nothing is uploaded; otherwise the repo is created (first:
    an unreachable Hub fails fast) and everything goes up in one `create_commit`. Returns the commit URL
    or the dry-run folder; every failure is a one-line `HubError`."""
    if dry_run_dir is not None:
        try:
            with atomic_path(dry_run_dir) as tmp:  # complete or absent, never half-written
                os.makedirs(tmp, exist_ok=True)
                build(tmp)
        except OSError as err:
            raise HubError(f"cannot write {shown(dry_run_dir)}: {err.strerror or one_line(err)}") from None
        return dry_run_dir

    from huggingface_hub import CommitOperationAdd, HfApi

    token = check_can_push(token)
    api = HfApi(token=token)
    kind = {"repo_type": repo_type} if repo_type else {}
    with tempfile.TemporaryDirectory(prefix="hf-colorize-push-") as folder:
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, **kind)
            files = build(folder)
            operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(folder, f)) for f in files]
            # create_commit directly: with hf_xet installed, upload_folder does not go through it
            info = api.create_commit(repo_id, operations=operations, commit_message=commit_message, **kind)
        except (KeyboardInterrupt, HubError):
            raise
        except Exception as err:  # network and Hub errors of every kind become one line
            raise HubError(_describe_failure(err, token)) from None
    return getattr(info, "commit_url", None) or str(info)
