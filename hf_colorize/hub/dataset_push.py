"""Publish a `colorize-dataset` output folder as a Hub dataset in one commit: its parquet shards (or
videos), `manifest.json` and the dataset card (regenerated for the repo id). `dry_run_dir` writes
exactly the files of the commit there and uploads nothing. Checks and errors as for the model push
(`hub.push`): `UsageError` for a bad repo id or dry-run folder, `HubError` with one line otherwise."""

import os
import shutil
import tempfile
from typing import Optional

from hf_colorize.common import HubError, atomic_path, one_line, shown
from hf_colorize.hub.push import _describe_failure, check_can_push, check_dry_run_dir, list_files, validate_repo_id


def _manifest(out_dir) -> dict:
    from hf_colorize.jobs.manifest import MANIFEST_FILE
    from hf_colorize.jobs.shards import read_json

    try:
        manifest = read_json(os.path.join(out_dir, MANIFEST_FILE))
    except (OSError, ValueError) as err:
        raise HubError(f"{shown(out_dir)}: cannot read {MANIFEST_FILE}: {one_line(err)}") from None
    if manifest is None:
        raise HubError(f"{shown(out_dir)}: no {MANIFEST_FILE} (not a finished colorize-dataset output)")
    if not manifest.get("complete"):
        counts = manifest.get("counts", {})
        raise HubError(f"{shown(out_dir)}: the job is not finished ({counts.get('units_finished')} of "
                       f"{counts.get('units')} units); run the same command again before pushing")
    return manifest


def build_upload_folder(out_dir, folder, repo_id: Optional[str] = None) -> list:
    """Copy what a dataset repo holds into the empty or new `folder`: the data (`data/*.parquet` or
    `videos/`), `manifest.json`, and `README.md` (the card, for `repo_id`). Returns the files."""
    from hf_colorize.jobs.card import CARD_FILE, build_card
    from hf_colorize.jobs.manifest import MANIFEST_FILE

    out_dir = os.fspath(out_dir)
    manifest = _manifest(out_dir)
    data = "videos" if manifest.get("kind") == "videos" else "data"
    files = [f for f in list_files(os.path.join(out_dir, data))
             if not os.path.basename(f).startswith(".") and (data == "videos" or f.endswith(".parquet"))]
    os.makedirs(folder, exist_ok=True)
    for name in [f"{data}/{f}" for f in files] + [MANIFEST_FILE]:
        target = os.path.join(folder, *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(out_dir, *name.split("/")), target)
    build_card(manifest, repo_id).save(os.path.join(folder, CARD_FILE))
    return list_files(folder)


def push_dataset(out_dir, repo_id: str, private: bool = False, token: Optional[str] = None, dry_run_dir=None,
                 commit_message: Optional[str] = None) -> str:
    """Publish `out_dir` as the Hub dataset `repo_id` in one commit; return the commit URL (or, with
    `dry_run_dir`, the folder written instead)."""
    validate_repo_id(repo_id, "--push-to-hub")
    out_dir = os.fspath(out_dir)
    if dry_run_dir is not None:
        dry_run_dir = check_dry_run_dir(dry_run_dir)
        try:
            with atomic_path(dry_run_dir) as tmp:  # complete or absent
                build_upload_folder(out_dir, tmp, repo_id)
        except OSError as err:
            raise HubError(f"cannot write {shown(dry_run_dir)}: {err.strerror or one_line(err)}") from None
        return dry_run_dir

    from huggingface_hub import CommitOperationAdd, HfApi

    token = check_can_push(token)
    _manifest(out_dir)  # an unfinished job fails before the Hub is contacted
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf-colorize-dataset-push-") as folder:
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            files = build_upload_folder(out_dir, folder, repo_id)
            operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(folder, f)) for f in files]
            # create_commit directly: with hf_xet installed, upload_folder does not go through it
            info = api.create_commit(repo_id, repo_type="dataset", operations=operations,
                                     commit_message=commit_message or "Upload colorized dataset with hf-colorize")
        except (KeyboardInterrupt, HubError):
            raise
        except Exception as err:  # network and Hub errors of every kind become one line
            raise HubError(_describe_failure(err, token)) from None
    return getattr(info, "commit_url", None) or str(info)
