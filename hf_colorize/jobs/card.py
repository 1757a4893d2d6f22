"""The dataset card of a job's output (`OUT/README.md`): huggingface_hub's `DatasetCard` with the
model, the settings, the counts and how it was made, from the manifest."""

import os
from typing import Optional

from hf_colorize.jobs.shards import DATA_DIR

CARD_FILE = "README.md"
TAGS = ["image-colorization", "colorization", "hf-colorize"]


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _source_text(source: dict) -> str:
    from hf_colorize.hub.cards import public_name

    name = public_name(source.get("path", "?"))
    if source.get("type") == "hub":
        return f"the Hub dataset [{name}](https://huggingface.co/datasets/{name}) (split `{source.get('split')}`)"
    return f"a local {source.get('type', 'folder')} (`{name}`)"


def command_line(manifest: dict) -> str:
    """The command that makes this output again (public names only: no local paths)."""
    from hf_colorize.hub.cards import public_name

    settings = manifest["settings"]
    source = settings["source"]
    parts = ["hf-colorize colorize-dataset", public_name(source.get("path", "SOURCE")), "--output OUT"]
    for key in ("split", "image_column", "key_column"):
        if source.get(key) not in (None, "train", "image"):
            parts.append(f"--{key.replace('_', '-')} {source[key]}")
    model = manifest["model"]["name"]
    if not model.startswith("hf_colorize.DEFAULT_MODEL"):
        parts.append(f"--model {public_name(model)}")
    for key, value in settings["colorization"].items():
        if value is not None:
            parts.append(f"--{key.replace('_', '-')} {value}")
    parts.append(f"--batch-size {settings['batch_size']}")
    if manifest.get("kind") == "videos":
        parts += ([] if settings.get("temporal") else ["--no-temporal"]) + [f"--crf {settings['crf']}"]
    else:
        parts += [f"--shard-size {settings['shard_size']}", f"--format {settings['format']}"]
        parts += [f"--quality {settings['quality']}"] if settings.get("quality") else []
    return " ".join(parts)


def build_card(manifest: dict, repo_id: Optional[str] = None):
    """A `huggingface_hub.DatasetCard` for the output described by `manifest`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from hf_colorize.hub.cards import public_name

    settings, counts, kind = manifest["settings"], manifest["counts"], manifest.get("kind", "images")
    colorization = settings["colorization"]
    videos = kind == "videos"
    data = DatasetCardData(
        task_categories=None if videos else ["image-to-image"],
        tags=TAGS + (["video"] if videos else []),
        size_categories=[_size_category(counts["colorized"])],
        configs=None if videos else [{"config_name": "default",
                                      "data_files": [{"split": "train", "path": f"{DATA_DIR}/*.parquet"}]}],
    )
    name = repo_id or "this dataset"
    model = manifest["model"]["name"]
    model_shown = "the embedded default model of hf-colorize" if model.startswith("hf_colorize.DEFAULT_MODEL") \
        else f"`{public_name(model)}`"
    options = ", ".join(f"{k} `{v}`" for k, v in colorization.items() if v is not None)
    lines = [
        f"# {name.split('/')[-1]}", "",
        f"Automatically colorized {'videos' if videos else 'images'} made with "
        f"hf-colorize (`hf-colorize colorize-dataset`) from {_source_text(manifest['source'])}.",
        "Colours are a model's guess (Zhang et al., ECCV 2016 method), not a record of the originals.", "",
        "## Contents", "",
        f"- {counts['colorized']} colorized {'videos' if videos else 'images'} of {counts['items']} items; "
        f"{counts['failed']} could not be colorized (listed with their reasons in `manifest.json`).",
    ]
    if videos:
        lines += ["- `videos/`: one colorized video per source video (same relative name), audio kept, "
                  f"temporal smoothing {'on' if settings.get('temporal') else 'off'}."]
    else:
        fmt = settings["format"] + (f", quality {settings['quality']}" if settings.get("quality") else "")
        lines += [f"- `{DATA_DIR}/shard-*.parquet`: one row per image: `key` (the source file name or key column), "
                  "`index` (position in the source), `image` (" + fmt + "), `width`, `height`, and the settings "
                  "used (`model`, `temperature`, `decode_mode`, `size`, `precision`).",
                  "", "```python", "from datasets import load_dataset",
                  f"ds = load_dataset({repo_id!r})" if repo_id else
                  f"ds = load_dataset(\"parquet\", data_files=\"{DATA_DIR}/*.parquet\")", "```"]
    lines += [
        "", "## How it was made", "",
        f"- Model: {model_shown} (weights fingerprint `{manifest['model']['fingerprint']}`).",
        f"- Colorization: {options}.",
        f"- hf-colorize {manifest['version']}, updated {manifest['updated']}.",
    ]
    lines += ["", "The command (any number of processes gives the same rows; see hf-colorize's docs/dataset-jobs.md "
              "for `accelerate launch` and `torchrun`):", "", "```bash", command_line(manifest), "```"]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def write_card(out_dir, manifest: dict, repo_id: Optional[str] = None) -> str:
    from hf_colorize.common import atomic_path

    path = os.path.join(os.fspath(out_dir), CARD_FILE)
    with atomic_path(path) as tmp:
        build_card(manifest, repo_id).save(tmp)
    return path
