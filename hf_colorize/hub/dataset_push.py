"""Publish a `colorize-dataset` output folder as a Hub dataset in one commit: its parquet shards (or
videos), `manifest.json` and the dataset card (regenerated for the repo id). `dry_run_dir` writes
exactly the files of the commit there and uploads nothing. Checks and errors as for the model push
(`hub.push`): `UsageError` for a bad repo id or dry-run folder, `HubError` with one line otherwise."""

import os
import shutil
from typing import Optional

from hf_colorize.common import HubError, one_line, shown
from hf_colorize.hub.push import check_can_push, check_dry_run_dir, list_files, publish, validate_repo_id


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
    else:
        token = check_can_push(token)
        _manifest(out_dir)  # an unfinished job fails before the Hub is contacted
    return publish(lambda folder: build_upload_folder(out_dir, folder, repo_id), repo_id, repo_type="dataset",
                   private=private, token=token, dry_run_dir=dry_run_dir,
                   commit_message=commit_message or "Upload colorized dataset with hf-colorize")
