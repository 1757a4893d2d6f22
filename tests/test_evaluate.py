"""`hf-colorize evaluate` and `evaluate_model` on real shared photos with a tiny model."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from hf_colorize.cli import main
from hf_colorize.training.data import center_crop
from hf_colorize.evaluation.protocol import evaluate_model
from hf_colorize.models.colorization.image_processing_colorization import rgb_to_lab
from hf_colorize.evaluation.metrics import AucAccumulator, colorfulness

SIZE = 64


def _main(argv) -> int:
    """`hf-colorize ARGV`'s exit code (argparse's usage errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _crops(paths, size=SIZE):
    """Independent ground truth: centre crops as uint8 (N, 3, S, S) and their Lab."""
    rgb = torch.stack([torch.from_numpy(np.array(center_crop(Image.open(p).convert("RGB"), size))).permute(2, 0, 1) for p in paths])
    return rgb, rgb_to_lab(rgb.float() / 255)


@pytest.fixture(scope="module")
def api_result(tiny_model_dir, photo_paths):
    return evaluate_model(tiny_model_dir, [str(p) for p in photo_paths[:4]], size=SIZE, batch_size=3)


def test_evaluate_model_on_file_list_matches_independent_ground_truth(api_result, photo_paths):
    r = api_result
    assert r["num_images"] == 4 and r["num_pixels"] == 4 * SIZE * SIZE
    assert r["skipped"]["grayscale"] == 0 and r["skipped"]["undecodable"] == 0
    rgb, lab = _crops(photo_paths[:4])
    true_ab = lab[:, 1:]
    # the mean-colour baseline predicts the set's mean ab, computed over all its pixels
    assert r["mean_ab"] == pytest.approx(true_ab.double().mean(dim=(0, 2, 3)).tolist(), abs=1e-3)
    # ground-truth colourfulness is the mean over the photos
    assert r["results"]["model"]["colorfulness_gt"] == pytest.approx(colorfulness(rgb).mean().item(), rel=1e-6)
    # the gray baseline, rendered to 8-bit and read back, is ab ~ 0: its AuC equals a direct computation
    direct = AucAccumulator()
    direct.update(torch.zeros_like(true_ab), true_ab)
    assert r["results"]["gray"]["auc_raw"] == pytest.approx(direct.result()["auc_raw"], abs=2e-3)
    assert r["results"]["gray"]["auc_rebalanced"] == pytest.approx(direct.result()["auc_rebalanced"], abs=2e-3)
    assert r["results"]["gray"]["hue_accuracy"] == 0.0
    assert r["results"]["gray"]["colorfulness"] < 0.5
    for name in ("model", "gray", "mean_color"):
        row = r["results"][name]
        assert 0.0 < row["auc_raw"] <= 1.0 and 0.0 < row["auc_rebalanced"] <= 1.0
        assert 5.0 < row["psnr"] < 60.0
        assert len(r["curves"][name]["raw"]) == 151
    json.dumps(r)  # JSON-ready


def test_results_do_not_depend_on_batching(api_result, tiny_model_dir, photo_paths):
    again = evaluate_model(tiny_model_dir, [Image.open(p) for p in photo_paths[:4]], size=SIZE, batch_size=1)
    for name in ("model", "gray", "mean_color"):
        for key in ("auc_raw", "auc_rebalanced", "psnr", "colorfulness", "hue_accuracy"):
            assert again["results"][name][key] == pytest.approx(api_result["results"][name][key], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_cli_writes_table_json_plot_and_contact_sheet(tiny_model_dir, many_photo_files, tmp_path, capsys):
    out_json, plot, sheet = tmp_path / "r.json", tmp_path / "auc.png", tmp_path / "sheet.png"
    rc = main([
        "evaluate", "--model", str(tiny_model_dir), "--dataset", str(many_photo_files[0].parent), "--limit", "6",
        "--size", str(SIZE), "--batch-size", "4", "--json", str(out_json), "--plot", str(plot),
        "--contact-sheet", str(sheet), "--sheet-images", "3",
    ])
    assert rc == 0
    table = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["num_images"] == 6 and data["split"] is None  # a plain folder has no splits
    for label, name in (("model", "model"), ("gray (ab = 0)", "gray"), ("mean colour", "mean_color")):
        row = next(line for line in table.splitlines() if line.startswith(label))
        assert f"{data['results'][name]['auc_raw']:.3f}" in row
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.width > 400
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size == (3 * 192, 18 + 3 * 192)
        # column 1 is the gray input, column 3 the colour truth
        arr = np.asarray(im.convert("RGB")).astype(int)
        inp, truth = arr[18:18 + 192, :192], arr[18:18 + 192, 384:]
        assert np.abs(inp[..., 0] - inp[..., 1]).max() <= 1
        assert np.abs(truth[..., 0] - truth[..., 2]).mean() > 3
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left


def test_grayscale_and_corrupt_photos_are_skipped_and_counted(tiny_model_dir, photo_paths, gray_photo_paths, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in photo_paths[:2] + gray_photo_paths[:1]:
        (folder / p.name).symlink_to(p)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--dataset", str(folder), "--size", str(SIZE), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["num_images"] == 2
    assert data["skipped"]["grayscale"] == 1 and data["skipped"]["undecodable"] == 1
    err = capsys.readouterr().err
    assert "hf-colorize evaluate: warning: " in err and "broken.jpg: cannot decode, skipped" in err


@pytest.mark.parametrize("case", ["missing_dataset", "only_gray", "bad_model", "bad_output_dir"])
def test_cli_errors_are_one_line(case, tiny_model_dir, gray_photo_paths, tmp_path, capsys):
    dataset, model, extra = str(tmp_path), str(tiny_model_dir), []
    if case == "missing_dataset":
        dataset = str(tmp_path / "nope")
    elif case == "only_gray":
        for p in gray_photo_paths[:2]:
            (tmp_path / p.name).symlink_to(p)
    elif case == "bad_model":
        model = str(tmp_path / "no_model")
    else:
        extra = ["--json", str(tmp_path / "missing" / "r.json")]
    rc = _main(["evaluate", "--model", model, "--dataset", dataset, "--size", str(SIZE)] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == (2 if case == "bad_output_dir" else 1)  # a bad output path is a usage error, found first
    assert len([line for line in err if line.startswith("hf-colorize evaluate: error:")]) == 1
    assert "Traceback" not in "\n".join(err)
    expected = {"missing_dataset": "nope", "only_gray": "no colour images", "bad_model": "cannot load model", "bad_output_dir": "does not exist"}
    assert expected[case] in err[-1]


def test_streams_parquet_shards_by_split_and_names_a_missing_column(tiny_model_dir, photo_paths, gray_photo_paths, tmp_path, capsys):
    from hf_colorize.training.data import pack_folder

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photo_paths[:4] + gray_photo_paths[:2]:
        (folder / p.name).symlink_to(p)
    shards = tmp_path / "shards"
    report = pack_folder(folder, shards, max_side=96, holdout_every=2, progress=False)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--dataset", str(shards), "--split", "test",
                 "--size", "32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["split"] == "test"
    assert data["num_images"] + data["skipped"]["grayscale"] == report["written"]["test"] == 3
    assert main(["evaluate", "--model", str(tiny_model_dir), "--dataset", str(shards), "--image-column", "photo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "no column 'photo'" in err[-1] and sum(line.startswith("hf-colorize evaluate: error") for line in err) == 1


def test_network_size_changes_only_the_models_input(tiny_model_dir, photo_paths):
    """With network_size != size the crops (and scores) stay at `size`, and the model row is exactly what
    the pipeline delivers for the crop at that network size."""
    from transformers import pipeline

    paths = [str(p) for p in photo_paths[:2]]
    r = evaluate_model(tiny_model_dir, paths, size=SIZE, network_size=SIZE // 2, batch_size=2)
    assert r["protocol"]["size"] == SIZE and r["protocol"]["network_size"] == SIZE // 2
    assert r["num_pixels"] == 2 * SIZE * SIZE
    same = evaluate_model(tiny_model_dir, paths, size=SIZE, network_size=SIZE, batch_size=2)
    assert same["results"]["gray"] == r["results"]["gray"]  # the baselines do not see the network
    assert same["results"]["model"]["auc_raw"] != r["results"]["model"]["auc_raw"]
    colorize = pipeline("image-colorization", model=str(tiny_model_dir))
    rgb, _ = _crops(paths)
    delivered = torch.stack([  # "np": uint8 (H, W, 3)
        torch.from_numpy(colorize(Image.fromarray(c.permute(1, 2, 0).numpy()), size=SIZE // 2, output_type="np"))
        for c in rgb
    ]).permute(0, 3, 1, 2)
    assert r["results"]["model"]["colorfulness"] == pytest.approx(colorfulness(delivered).mean().item(), rel=1e-3)


def test_bad_network_size_is_one_line(tiny_model_dir, photo_paths):
    from hf_colorize.evaluation.protocol import EvaluationError

    with pytest.raises(EvaluationError, match="network size must be a positive multiple of 8, got 30"):
        evaluate_model(tiny_model_dir, [str(photo_paths[0])], size=SIZE, network_size=30)


def test_cli_usage_errors_exit_2_before_any_work(tmp_path, capsys):
    """Bad ranges and unwritable outputs: one line, exit 2, before the model or the data are touched."""
    missing = str(tmp_path / "no_such_dataset")
    for extra, message in ((["--size", "30"], "argument --size: must be a multiple of 8"),
                           (["--network-size", "7"], "argument --network-size: must be a multiple of 8"),
                           (["--limit", "0"], "argument --limit: must be >= 1"),
                           (["--temperature", "0"], "argument --temperature"),
                           (["--decode-mode", "vivid"], "argument --decode-mode"),
                           (["--decode", "vivid"], "argument --decode-mode/--decode: invalid choice: 'vivid'"),
                           (["--json", str(tmp_path)], "--json " + str(tmp_path) + ": is a folder"),
                           (["--plot", str(tmp_path / "x" / "p.png")], "does not exist")):
        assert _main(["evaluate", "--dataset", missing, "--model", str(tmp_path / "no_model"), *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hf-colorize evaluate: error:") and message in err[0], err


def test_a_colorizer_gives_its_folders_numbers(tiny_model_dir, photo_paths, api_result):
    """A loaded `Colorizer` gives the same numbers as its folder; its defaults are the protocol's."""
    from hf_colorize.common import load_colorizer

    paths = [str(p) for p in photo_paths[:4]]
    same = evaluate_model(load_colorizer(str(tiny_model_dir)), paths, size=SIZE, batch_size=3)
    assert same["results"] == api_result["results"]
    warm = evaluate_model(load_colorizer(str(tiny_model_dir), temperature=1.0), paths[:2], size=SIZE)
    assert warm["protocol"]["temperature"] == 1.0
