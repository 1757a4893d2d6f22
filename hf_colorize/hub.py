"""`hf-colorize push`: publish a model folder to the Hub in one commit.

The upload folder holds the weights and configs, the four remote-code files of the installed package
(so `trust_remote_code=True` works without hf-colorize), a generated model card, example images
(public-domain `skimage.data` photos in gray and as colorized by the model) and, when given, the
evaluation JSON and its AuC plot. `--dry-run OUT_DIR` writes exactly that folder and uploads nothing.
The token follows huggingface_hub conventions (`--token`, `HF_TOKEN`, `hf auth login`) and is never printed.
"""

import json
import os
import shutil
import sys
import tempfile
from typing import Optional

REMOTE_CODE_FILES = (
    "configuration_colorization.py",
    "modeling_colorization.py",
    "image_processing_colorization.py",
    "pipeline_colorization.py",
)
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_colorization.ColorizationConfig",
    "AutoModel": "modeling_colorization.ColorizationModel",
}
PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_colorization.ColorizationImageProcessor"}
EXAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea")  # public domain, shipped inside scikit-image
EXAMPLE_MAX_SIDE = 512
EVAL_FILE = "eval_results.json"  # in the upload, and read from the model folder when no results are given


class HubPushError(RuntimeError):
    """Publishing failed; the message is one line naming the cause (never the token)."""


# --------------------------------------------------------------------------------------------------
# The upload folder
# --------------------------------------------------------------------------------------------------
def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise HubPushError(f"{path}: cannot read JSON: {err}") from None


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _check_model_dir(model_dir: str) -> list:
    if not os.path.isdir(model_dir):
        raise HubPushError(f"{model_dir}: no such model folder")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise HubPushError(f"{model_dir}: no config.json (not a saved model folder)")
    weights = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors") or f == "model.safetensors.index.json")
    if not any(f.endswith(".safetensors") for f in weights):
        raise HubPushError(f"{model_dir}: no .safetensors weights")
    return weights


def _write_examples(folder: str) -> list:
    """Colorize the gray versions of a few `skimage.data` photos with the model in `folder`."""
    import numpy as np
    import torch
    from PIL import Image

    from hf_colorize import ColorizationImageProcessor, ColorizationModel

    try:
        import skimage.data
    except ImportError:
        print("hf-colorize: warning: scikit-image is not installed; the card will have no example images", file=sys.stderr)
        return []
    from .evaluate import quiet_weight_loading

    with quiet_weight_loading():
        model = ColorizationModel.from_pretrained(folder, dtype=torch.float32).eval()
    processor = ColorizationImageProcessor.from_pretrained(folder)
    os.makedirs(os.path.join(folder, "examples"), exist_ok=True)
    examples = []
    for name in EXAMPLE_PHOTOS:
        photo = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        photo.thumbnail((EXAMPLE_MAX_SIDE, EXAMPLE_MAX_SIDE), Image.BICUBIC)
        gray = photo.convert("L")
        with torch.inference_mode():
            outputs = model(pixel_values=processor.preprocess(gray)["pixel_values"])
        colorized = processor.post_process_colorization(outputs, images=[gray])[0]
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
    """
    import hf_colorize

    from .cards import CardError, build_model_card
    from .evaluate import plot_auc_curves

    model_dir, out_dir = os.fspath(model_dir), os.fspath(out_dir)
    weights = _check_model_dir(model_dir)
    os.makedirs(out_dir, exist_ok=True)
    for name in weights:
        shutil.copyfile(os.path.join(model_dir, name), os.path.join(out_dir, name))
    # configs: make sure they point at the shipped remote code, whatever saved them
    config = _read_json(os.path.join(model_dir, "config.json"))
    if config.get("model_type") != "colorization":
        raise HubPushError(f"{model_dir}: config.json is not a colorization model (model_type {config.get('model_type')!r})")
    from .modeling_colorization import _CUSTOM_PIPELINES

    config["auto_map"] = dict(CONFIG_AUTO_MAP)
    config["custom_pipelines"] = _CUSTOM_PIPELINES
    _write_json(os.path.join(out_dir, "config.json"), config)
    proc_path = os.path.join(model_dir, "preprocessor_config.json")
    if os.path.isfile(proc_path):
        processor = _read_json(proc_path)
    else:
        processor = hf_colorize.ColorizationImageProcessor(size=config.get("image_size", 256)).to_dict()
    processor["auto_map"] = dict(PROCESSOR_AUTO_MAP)
    processor["image_processor_type"] = "ColorizationImageProcessor"
    _write_json(os.path.join(out_dir, "preprocessor_config.json"), processor)
    package_dir = os.path.dirname(os.path.abspath(hf_colorize.__file__))
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(os.path.join(package_dir, name), os.path.join(out_dir, name))

    try:
        example_list = _write_examples(out_dir) if examples else []
    except Exception as err:  # the folder's weights must load; anything else is a broken model folder
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise HubPushError(f"{model_dir}: the model does not load or run: {first}") from None
    eval_plot = None
    if evaluation:
        _write_json(os.path.join(out_dir, EVAL_FILE), evaluation)
        if evaluation.get("curves"):
            eval_plot = "eval_auc.png"
            plot_auc_curves(evaluation, os.path.join(out_dir, eval_plot))
    try:
        card = build_model_card(model_dir, repo_id=repo_id, evaluation=evaluation, training=training,
                                examples=example_list, license=license, eval_plot=eval_plot)
    except CardError as err:
        raise HubPushError(str(err)) from None
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


def _one_line(err: BaseException, token: Optional[str]) -> str:
    text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
    if token:
        text = text.replace(token, "***")
    return text


def _describe_failure(err: BaseException, token: Optional[str]) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE); unset it to push"
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        hint = " (check the token's write access)" if status in (401, 403) else ""
        return f"the Hub refused the upload{hint}: {_one_line(err, token)}"
    module = type(err).__module__ or ""
    if module.startswith(("httpx", "requests", "urllib3")) or isinstance(err, (ConnectionError, TimeoutError)):
        return f"cannot reach the Hugging Face Hub ({type(err).__name__}: {_one_line(err, token)})"
    return f"push failed ({type(err).__name__}: {_one_line(err, token)})"


def _load_evaluation(eval_results):
    if eval_results is None or isinstance(eval_results, dict):
        return eval_results
    data = _read_json(os.fspath(eval_results))
    if not isinstance(data, dict) or "results" not in data or "model" not in data.get("results", {}):
        raise HubPushError(f"{eval_results}: not an `hf-colorize evaluate --json` file (no results.model)")
    return data


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import validate_repo_id

    if not repo_id or repo_id.count("/") != 1:
        raise HubPushError(f"repo id {repo_id!r} must look like user/name")
    try:
        validate_repo_id(repo_id)
    except ValueError as err:
        raise HubPushError(f"invalid repo id {repo_id!r}: {_one_line(err, None)}") from None


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
    Raises `HubPushError` (one line) on any failure; local files are never modified.
    """
    model_dir = os.fspath(model_dir)
    _validate_repo_id(repo_id)
    _check_model_dir(model_dir)
    if eval_results is None and os.path.isfile(os.path.join(model_dir, EVAL_FILE)):
        eval_results = os.path.join(model_dir, EVAL_FILE)  # measured metrics shipped with the model
    evaluation = _load_evaluation(eval_results)
    if dry_run_dir is not None:
        dry_run_dir = os.path.abspath(os.fspath(dry_run_dir))
        if os.path.exists(dry_run_dir) and (not os.path.isdir(dry_run_dir) or os.listdir(dry_run_dir)):
            raise HubPushError(f"{dry_run_dir}: already exists and is not an empty folder")
        parent = os.path.dirname(dry_run_dir)
        if not os.path.isdir(parent):
            raise HubPushError(f"{parent}: no such folder")
        tmp = tempfile.mkdtemp(prefix=".tmp-push-", dir=parent)
        try:
            build_upload_folder(model_dir, tmp, repo_id, evaluation, training, license)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
            os.replace(tmp, dry_run_dir)  # complete or absent, never half-written
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dry_run_dir

    if _offline():
        raise HubPushError("HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it, or use --dry-run OUT_DIR")
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = token or get_token()
    if not token:
        raise HubPushError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf-colorize-push-") as folder:
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)  # first: an unreachable Hub fails fast
            files = build_upload_folder(model_dir, folder, repo_id, evaluation, training, license)
            operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(folder, f)) for f in files]
            # create_commit directly: with hf_xet installed, upload_folder does not go through it
            info = api.create_commit(
                repo_id, operations=operations,
                commit_message=commit_message or "Upload colorization model with hf-colorize",
            )
        except (KeyboardInterrupt, HubPushError):
            raise
        except Exception as err:  # network and Hub errors of every kind become one line
            raise HubPushError(_describe_failure(err, token)) from None
    return getattr(info, "commit_url", None) or str(info)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    parser.add_argument("--repo-id", required=True, help="target Hub repository, user/name")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--dry-run", default=None, metavar="OUT_DIR", help="write the upload folder here and upload nothing")
    parser.add_argument("--eval-json", default=None, help="results of `hf-colorize evaluate --json` for the card")
    parser.add_argument("--license", default=None, help="Hub license id (default: from the training data)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")


def run(args) -> int:
    import hf_colorize

    try:
        result = push_to_hub(
            args.model or hf_colorize.DEFAULT_MODEL, args.repo_id, private=args.private, token=args.token,
            eval_results=args.eval_json, dry_run_dir=args.dry_run, commit_message=args.commit_message,
            license=args.license,
        )
    except (HubPushError, OSError) as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"wrote the upload folder for {args.repo_id} to {result} (nothing uploaded)")
    else:
        print(f"pushed {args.repo_id}: {result}")
    return 0
