"""A job's settings (`OUT/settings.json`, written before any work, compared on every rerun) and its
manifest (`OUT/manifest.json`: model, settings, counts, failures with reasons), rebuilt from the
finished shards' sidecars at the end of every run."""

import hashlib
import json
import os
import time
from typing import List, Optional

from hf_colorize.common import UsageError, shown, write_json
from hf_colorize.jobs.shards import is_finished, read_json, shard_path, sidecar_path

SETTINGS_FILE = "settings.json"
MANIFEST_FILE = "manifest.json"
TOOL = "hf-colorize colorize-dataset"


def model_fingerprint(model) -> str:
    """A digest of the weights: a rerun with other weights under the same name is told apart."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def colorization_settings(colorizer) -> dict:
    """The options a `Colorizer` actually runs with (the model's defaults filled in)."""
    d, config = colorizer.defaults, colorizer.model.config
    temperature = getattr(config, "decode_temperature", None) if d["temperature"] is None else d["temperature"]
    return {
        "temperature": None if temperature is None else float(temperature),
        "decode_mode": d["decode_mode"] or getattr(config, "decode_mode", None),
        "size": int(d["size"] or colorizer.image_processor.size),
        "precision": colorizer.resolved_precision,  # "auto" recorded as what it ran as
        "seed": d["seed"],
        **{k: d[k] for k in ("chromatic_fading", "fading_eta") if d.get(k) is not None},
    }


def model_name(model) -> str:
    if model is None:
        return "hf_colorize.DEFAULT_MODEL (the embedded default model)"
    model = os.fspath(model)
    return os.path.abspath(model) if os.path.isdir(model) else model


def normalized(data):
    """As it reads back from JSON (tuples -> lists), so a fresh dict compares equal to a stored one."""
    return json.loads(json.dumps(data))


def _flat(data, prefix=""):
    out = {}
    for k, v in (data or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_output_dir(out_dir) -> str:
    """OUT must be a new folder, an empty one, or one this command made (it holds settings.json); its
    parent must exist and be writable. `UsageError` otherwise, before any work."""
    path = os.path.abspath(os.fspath(out_dir))
    flag = f"--output {shown(out_dir)}"
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{flag}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag}: not writable (permission denied)")
        if os.listdir(path) and not os.path.isfile(os.path.join(path, SETTINGS_FILE)):
            raise UsageError(f"{flag}: is not empty and holds no {SETTINGS_FILE} (not a colorize-dataset output); "
                             "use a new or empty folder")
        return path
    parent = os.path.dirname(path)
    while not os.path.exists(parent):  # created with its parents
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag}: {shown(parent)} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot create it in {shown(parent)} (permission denied)")
    return path


def check_settings(out_dir, settings: dict) -> Optional[dict]:
    """The stored settings of OUT (None for a new job); `UsageError` naming what differs when a rerun
    asks for other settings (its shards would mix two colorizations)."""
    stored = read_json(os.path.join(out_dir, SETTINGS_FILE))
    if stored is None:
        return None
    old, new = _flat(stored.get("settings")), _flat(normalized(settings))
    differ = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if differ:
        shown_diff = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise UsageError(f"--output {shown(out_dir)} was made with different settings ({shown_diff}{more}); "
                         "use a new --output, or the same settings to resume")
    return stored


def write_settings(out_dir, settings: dict) -> None:
    from hf_colorize import __version__

    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.isfile(path):
        write_json(path, {"tool": TOOL, "version": __version__, "created": _now(), "settings": normalized(settings)})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def shard_infos(out_dir, shards: int) -> List[Optional[dict]]:
    """Each shard's sidecar, None for an unfinished shard (its parquet file is not there)."""
    infos = []
    for i in range(shards):
        if not is_finished(out_dir, i):
            infos.append(None)
            continue
        info = read_json(sidecar_path(out_dir, i))
        if info is None:  # the sidecar was deleted by hand: the counts come from the parquet footer
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(shard_path(out_dir, i)).metadata.num_rows
            info = {"shard": i, "file": f"data/shard-{i:05d}.parquet", "items": None, "rows": rows,
                    "failures": [], "note": "sidecar missing: failures unknown"}
        infos.append(info)
    return infos


def build_manifest(out_dir, settings: dict, units: List[Optional[dict]], items: int, last_run: dict,
                   kind: str = "images") -> dict:
    """The manifest of OUT from its units' sidecars (shards, or videos for a video job)."""
    from hf_colorize import __version__

    stored = read_json(os.path.join(out_dir, SETTINGS_FILE)) or {}
    done = [u for u in units if u is not None]
    failures = [f for u in done for f in u.get("failures", [])]
    counts = {"items": items, "failed": len(failures), "units": len(units), "units_finished": len(done)}
    if kind == "images":
        counts["colorized"] = sum(u["rows"] for u in done)
    else:
        counts["colorized"] = sum(1 for u in done if not u.get("failures"))
    manifest = {
        "tool": TOOL, "version": __version__, "kind": kind, "created": stored.get("created"), "updated": _now(),
        "complete": len(done) == len(units), "model": settings["model"], "source": settings["source"],
        "settings": normalized(settings), "counts": counts,
        "failures": sorted(failures, key=lambda f: f["index"]), "last_run": last_run,
    }
    if kind == "images":
        manifest["shards"] = [{"file": u["file"], "items": u["items"], "rows": u["rows"],
                               "failed": len(u.get("failures", []))} for u in done]
    else:
        manifest["videos"] = [{k: u[k] for k in ("index", "key", "output", "frames", "fps", "audio", "temporal", "cuts")
                               if k in u} for u in done if not u.get("failures")]
    return manifest


def write_manifest(out_dir, manifest: dict) -> str:
    path = os.path.join(out_dir, MANIFEST_FILE)
    write_json(path, manifest)
    return path
