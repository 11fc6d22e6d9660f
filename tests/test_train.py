"""A short CPU training run on a tiny prepared set: the loss falls and the checkpoint serves."""

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facexray.cli import main
from facexray.engines.xray import WEAK_MODEL_AUC
from facexray.models.checkpoint import read_metadata
from facexray.train.dataset import SampleConfig, XrayDataset, paired_collate
from facexray.train.loop import TrainConfig, lr_at, schedule_done, train

CROP = {"size": 256, "margin": 0.3, "align": "5pt-similarity", "version": 1}   # metadata of random starts


def test_dataset_items_are_consistent_and_seeded(tiny_dataset):
    ds = XrayDataset(tiny_dataset, "train", seed=0)
    a, b = ds[0], ds[0]
    assert a["image"].shape == (3, 256, 256) and a["image"].dtype == torch.uint8 and a["xray"].shape == (64, 64)
    assert torch_equal(a["image"], b["image"]) and float(a["label"]) == float(b["label"])
    labels = [float(ds[i]["label"]) for i in range(len(ds))]
    assert 0 < np.mean(labels) < 1                        # real and blended fakes both appear
    for i in range(len(ds)):
        item = ds[i]
        if item["label"] == 0:
            assert float(item["xray"].max()) == 0.0
        else:
            assert float(item["xray"].max()) > 0.3          # a blended face has a boundary to learn


def test_passes_draw_every_face_again_with_new_randomness(tiny_dataset):
    one = XrayDataset(tiny_dataset, "train", seed=0)
    three = XrayDataset(tiny_dataset, "train", seed=0, passes=3)
    n = len(one)
    assert len(three) == 3 * n
    assert torch_equal(three[1]["image"], one[1]["image"])               # the first pass is the plain epoch
    again = [three[1 + k * n] for k in range(3)]
    assert all(int(a["index"]) == 1 for a in again)                      # the same face,
    assert not torch_equal(again[0]["image"], again[1]["image"])         # drawn anew
    assert not torch_equal(again[1]["image"], again[2]["image"])


def test_an_epoch_longer_than_the_data_runs_its_steps(tiny_dataset, tmp_path):
    faces = len(XrayDataset(tiny_dataset, "train"))
    steps = 2 * faces // 8 + 1                                           # two passes and a bit
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), epochs=1, batch_size=8, workers=0,
                      steps_per_epoch=steps, patch_size=64, patch_prob=1.0, log_every=1)
    res = train(cfg)
    log = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, steps + 1))
    assert res.history[-1]["step"] == steps


def torch_equal(x, y):
    return bool((x == y).all())


def test_boost_shifts_the_colour_of_a_fake_through_its_mask_and_decays_to_plain_blends(tiny_dataset):
    plain = dict(augment=False, cutout_prob=0.0, jitter_px=0, fake_prob=1.0)
    as_blended = XrayDataset(tiny_dataset, "train", SampleConfig(**plain))
    loud = XrayDataset(tiny_dataset, "train", SampleConfig(**plain, boost=40.0, boost_epochs=4))
    for i in range(min(6, len(loud))):
        a, b = as_blended[i], loud[i]
        assert torch_equal(a["xray"], b["xray"])                            # same blend, same target
        shift = b["image"].float() - a["image"].float()
        far = a["xray"].repeat_interleave(4, 0).repeat_interleave(4, 1) == 0
        outside = far & (shift.abs().amax(0) < 0.5)                        # untouched pixels
        assert 0.2 < float(outside.float().mean()) < 0.95                  # only the pasted region moves,
        moved = shift[:, ~outside]
        assert 4 < float(moved.abs().amax()) <= 40.5                       # by ≥ 20 × its paste ratio (≥ 0.25), ≤ 40
    boosts = []
    for epoch in (0, 2, 9, 4):
        loud.set_epoch(epoch)
        boosts.append(loud.boost)
    assert boosts == [40.0, 20.0, 0.0, 0.0]
    as_blended.set_epoch(4)
    assert torch_equal(loud[0]["image"], as_blended[0]["image"])           # from boost_epochs on: as blended
    val = XrayDataset(tiny_dataset, "val", SampleConfig(**plain, boost=40.0, boost_epochs=4), train=False)
    assert val.boost == 0.0                                                # validation never boosts


@pytest.mark.slow
@pytest.mark.usefixtures("detector_weights")
def test_two_minute_cpu_training_lowers_loss_and_serves(tiny_dataset, shared_dir, tmp_path, capsys):
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), epochs=8, batch_size=4, workers=0,
                      lr=1e-3, warmup_steps=5, log_every=1, seed=0, sample=SampleConfig(sbi_prob=0.8))
    res = train(cfg, progress=True)
    epoch_lines = [x for x in capsys.readouterr().err.splitlines() if "validation AUC" in x]
    assert len(epoch_lines) == res.epochs_run and epoch_lines[0].startswith("epoch 1/8: step ")
    log = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) >= 20
    k = max(5, len(losses) // 4)
    assert np.mean(losses[-k:]) < 0.8 * np.mean(losses[:k]), losses
    assert any("val_auc" in r for r in log)
    assert res.best.exists() and res.epochs_run >= 1
    meta = read_metadata(res.best)
    assert meta["provenance"]["data"]["faces"]["train"] > 0 and "recipe" in meta["provenance"]
    out = tmp_path / "r.jsonl"
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    assert main(["scan", str(clip), "--model", str(res.best), "--sample", "uniform=4", "--out", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["model"] == "best.safetensors" and 0 <= rec["score"] <= 1
    weak = meta["provenance"]["validation"]["auc"] < WEAK_MODEL_AUC   # a two-minute model is weak, and its records say so
    assert (rec["warning"] is not None) == weak and (not weak or "validation AUC" in rec["warning"])
    assert main(["eval", str(tiny_dataset), "--model", str(res.best), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["frame"]["n"] > 0
    # the self-blended measure: the validation split's faces, about half of them blended, as training validates
    assert main(["eval", str(tiny_dataset), "--model", str(res.best), "--blend", "sbi", "--json", str(tmp_path / "b.json")]) == 0
    blended = json.loads((tmp_path / "b.json").read_text())
    val = [json.loads(x) for x in (tiny_dataset / "index.jsonl").read_text().splitlines()]
    val = [r for r in val if r["split"] == "val"]
    assert (blended["blend"], blended["split"], blended["frame"]["n"]) == ("sbi", "val", len(val))
    assert blended["identities"] == len({r["identity"] for r in val}) and 0 < blended["frame"]["n_fake"] < len(val)
    assert blended["frame"]["n_fake"] == res.history[-1]["val_n_fake"]      # the very items training validated on
    # with the recipe's own mix of blends, eval gives the validation AUC the checkpoint records
    assert main(["eval", str(tiny_dataset), "--model", str(res.best), "--blend", "mix", "--json", str(tmp_path / "x.json")]) == 0
    mixed = json.loads((tmp_path / "x.json").read_text())["frame"]
    assert mixed["auc"] == pytest.approx(meta["provenance"]["validation"]["auc"], abs=1e-3)
    # the threshold chosen on the held-out identities' real sources, each scored as scan scores it
    cal_path = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(res.best), "--data", str(tiny_dataset), "--out", str(cal_path),
                 "--sample", "uniform=4", "--max-false-alarm", "0.25", "-q"]) == 0
    cal = read_metadata(cal_path)["calibration"]
    sources = {r["source"] for r in val}
    assert set(cal["scores"]) | set(cal["no_face"]) == sources and cal["real_sources"] == len(cal["scores"])
    scores = np.array(list(cal["scores"].values()))
    assert (scores >= cal["threshold"]).mean() == cal["false_alarm_rate"] <= 0.25
    assert (scores >= cal["threshold"] - 0.001).mean() > 0.25 or cal["threshold"] == 0.0
    # each face scored with its mirror image too: its own scores and threshold, the unmirrored calibration beside
    flip_path = tmp_path / "flip.safetensors"
    assert main(["calibrate", str(res.best), "--data", str(tiny_dataset), "--out", str(flip_path), "--flip",
                 "--sample", "uniform=4", "--max-false-alarm", "0.25", "-q"]) == 0
    flipped = read_metadata(flip_path)["calibration"]
    assert flipped["flip"] and not cal["flip"] and flipped["scores"] != cal["scores"]
    assert flipped["unflipped"]["scores"] == cal["scores"] and flipped["unflipped"]["threshold"] == cal["threshold"]
    from facexray.train.calibrate import calibrate

    scores_only = calibrate(res.best, tiny_dataset, sample="uniform=4", max_false_alarm=0.25, flip=True,
                            progress=False, with_unflipped=False)      # bench_accuracy's one pass
    assert scores_only.unflipped is None and scores_only.scores == flipped["scores"]


def test_lr_warms_up_then_anneals_over_the_steps_or_the_time_budget_whichever_ends_first():
    steps = TrainConfig(lr=1e-3, warmup_steps=10)
    timed = TrainConfig(lr=1e-3, warmup_steps=10, time_budget_s=100.0)
    assert lr_at(0, 1000, steps) == lr_at(0, 1000, timed, elapsed_s=50.0) == pytest.approx(1e-4)
    assert lr_at(10, 1000, steps, elapsed_s=50.0) == pytest.approx(1e-3)           # no budget: by steps alone
    assert lr_at(505, 1000, steps) == pytest.approx(0.5e-3)
    assert lr_at(10, 1000, timed, elapsed_s=50.0) == pytest.approx(0.5e-3)         # half the budget gone
    assert lr_at(505, 1000, timed, elapsed_s=10.0) == pytest.approx(0.5e-3)        # half the steps gone
    assert lr_at(20, 1000, timed, elapsed_s=120.0) == 0.0
    assert schedule_done(5, 1000, steps) == 0.0 and schedule_done(505, 1000, steps) == pytest.approx(0.5)
    assert schedule_done(505, 1000, timed, elapsed_s=80.0) == pytest.approx(0.8) and schedule_done(5, 10, timed) == 0.0


def test_shrunk_batches_keep_pairs_alike_and_their_targets_mass():
    from facexray.train.loop import shrink_batch

    face = torch.rand(1, 3, 256, 256)
    xray = torch.zeros(2, 64, 64)
    xray[1, 20:44, 20:44] = 1.0                     # the blended twin's boundary
    batch = {"image": torch.cat([face, face]).contiguous(memory_format=torch.channels_last), "xray": xray,
             "label": torch.tensor([0.0, 1.0])}
    out = shrink_batch(batch, 160, torch.channels_last)
    assert out["image"].shape == (2, 3, 160, 160) and out["xray"].shape == (2, 40, 40)
    assert out["image"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out["image"][0], out["image"][1]) and torch.equal(out["label"], batch["label"])
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0
    assert float(out["xray"][0].max()) == 0.0
    assert float(out["xray"][1].mean()) == pytest.approx(float(xray[1].mean()), rel=0.02)   # area kept
    # antialiased: a pixel-level checkerboard averages out instead of aliasing into stripes
    checker = ((torch.arange(256)[:, None] + torch.arange(256)) % 2).float().expand(1, 3, 256, 256)
    flat = shrink_batch({"image": checker, "xray": xray[:1]}, 160)["image"]
    assert float(flat.std()) < 0.05
    for bad in (150, 256, 320):
        with pytest.raises(ValueError, match="multiple of 32 below"):
            shrink_batch(batch, bad)


def test_a_low_resolution_share_shrinks_the_first_part_of_the_schedule(tiny_dataset, tmp_path, monkeypatch):
    import facexray.train.loop as loop

    sizes, real_shrink = [], loop.shrink_batch

    def spy(batch, *args, **kwargs):
        out = real_shrink(batch, *args, **kwargs)
        sizes.append(out["image"].shape[-1])
        return out

    monkeypatch.setattr(loop, "shrink_batch", spy)
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, workers=0, warmup_steps=0,
                      steps_per_epoch=4, log_every=1, low_res_size=128, low_res_share=0.5)
    res = train(cfg)
    assert sizes == [128, 128]                       # steps 0 and 1 of 4: the first half of the schedule
    assert res.history[-1]["step"] == 4


def test_patches_keep_image_and_target_aligned_and_relabel_windows_without_evidence():
    from facexray.train.loop import cut_patches

    cell = torch.arange(64 * 64, dtype=torch.float32).view(64, 64)
    image = cell.repeat_interleave(4, 0).repeat_interleave(4, 1).expand(3, 3, 256, 256).clone()
    xray = torch.zeros(3, 64, 64)
    xray[:, 30:34, 30:34] = 0.8                     # a boundary in the middle of every face
    batch = {"image": image, "xray": xray, "label": torch.tensor([1.0, 1.0, 0.0]),
             "xray_valid": torch.tensor([1.0, 0.0, 1.0])}
    rng = np.random.default_rng(0)
    seen_both = set()
    for _ in range(40):
        out = cut_patches(batch, 96, rng)
        assert out["image"].shape == (3, 3, 96, 96) and out["xray"].shape == (3, 24, 24)
        for i in range(3):
            # the target cell under image pixel (4r, 4c) is target[r, c]: the window moved both together
            top_left = int(out["image"][i, 0, 0, 0])
            assert torch.equal(out["image"][i, 0, ::4, ::4], cell[top_left // 64:top_left // 64 + 24,
                                                                 top_left % 64:top_left % 64 + 24])
            r, c = divmod(top_left, 64)
            assert torch.equal(out["xray"][i], xray[i, r:r + 24, c:c + 24])
        shows = float(out["xray"][0].max() > 0)
        assert float(out["label"][0]) == shows           # a fake window without blending is real
        seen_both.add(shows)
        assert float(out["label"][1]) == 1.0 and float(out["label"][2]) == 0.0   # no target: label kept; real stays real
    assert seen_both == {0.0, 1.0}
    with pytest.raises(ValueError, match="multiple of 4"):
        cut_patches(batch, 98, rng)
    many = cut_patches({**batch, "index": torch.arange(3)}, 64, rng, per_face=3)
    assert many["image"].shape == (9, 3, 64, 64) and many["index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    corners = {int(many["image"][i, 0, 0, 0]) for i in range(9)}
    assert len(corners) > 3                         # each face's windows are drawn apart, not copies


@pytest.mark.slow
def test_device_training_script_joins_the_carried_parts_trains_and_measures(tiny_dataset, tmp_path):
    """tools/device/train_default_model.sh as the last device call runs it (README, "Training the default
    model on a GPU"), here on the CPU: the dataset arrives as tar parts, the run and its measures land in $OUT."""
    carry = tmp_path / "carry"
    carry.mkdir()
    tar = subprocess.run(["tar", "-cf", "-", "-C", str(tiny_dataset.parent), "--transform", "s,^data,data/real_webp,",
                          "data"], capture_output=True, check=True).stdout
    n = len(tar) // 3 + 1
    for k in range(3):
        (carry / f"data.tar.{k:02d}").write_bytes(tar[k * n:(k + 1) * n])
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "CARRY": str(carry), "PARTS": str(tmp_path / "parts"), "WHEELS": ""}
    script = Path(__file__).parents[1] / "tools/device/train_default_model.sh"
    res = subprocess.run(["bash", str(script), "--device", "cpu", "--workers", "0", "--batch-size", "4",
                          "--time-budget", "5", "--epochs", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not list(carry.glob("data.tar.*"))                          # the parts moved where the script joins them
    assert (out / "run/best.safetensors").exists() and not (out / "run/last.state.pt").exists()
    assert "validation AUC" in (out / "train.log").read_text()
    recipe = read_metadata(out / "run/best.safetensors")["provenance"]["recipe"]
    assert (recipe["batch_size"], recipe["steps_per_epoch"], recipe["device"]) == (4, 150, "cpu")  # the GPU recipe
    val = sum(json.loads(x)["split"] == "val" for x in (tiny_dataset / "index.jsonl").read_text().splitlines())
    for blend in ("sbi", "bi"):
        measured = json.loads((out / f"eval_{blend}.json").read_text())
        assert (measured["blend"], measured["split"], measured["frame"]["n"]) == (blend, "val", val)


@pytest.mark.parametrize("option", ["real_change_prob", "real_reframe_prob"])
def test_real_faces_may_be_changed_and_stay_real(tiny_dataset, option):
    """What SBI does inside a paste (colour, blur, sharpening, rescaling), real faces show everywhere, so that
    only the boundary tells a blend (`real_change_prob`); a head over a changed surround is a real face too
    (`real_reframe_prob`). They stay real, with no X-ray target, and validation never sees either."""
    plain = dict(augment=False, cutout_prob=0.0, jitter_px=0, fake_prob=0.0)
    clean = XrayDataset(tiny_dataset, "train", SampleConfig(**plain))
    changed = XrayDataset(tiny_dataset, "train", SampleConfig(**plain, **{option: 1.0}))
    for i in range(min(8, len(clean))):
        a, b = clean[i], changed[i]
        assert float(b["label"]) == 0.0 and float(b["xray"].max()) == 0.0
        assert (a["image"].float() - b["image"].float()).abs().mean() > 1.0
    v_clean = XrayDataset(tiny_dataset, "val", SampleConfig(**plain), train=False)
    v_changed = XrayDataset(tiny_dataset, "val", SampleConfig(**plain, **{option: 1.0}), train=False)
    assert torch_equal(v_clean[0]["image"], v_changed[0]["image"])


def test_paired_items_are_a_face_and_its_blend_alike_in_all_but_the_blend(tiny_dataset):
    """SBI's batches: each real face is shown as itself and blended, with one crop, change, cutout and
    augmentation, so that nothing outside the blend tells them apart; `paired_collate` keeps each pair
    side by side in a batch of faces."""
    cfg = SampleConfig(paired=True, real_change_prob=0.5, real_reframe_prob=0.5, cutout_prob=0.5)
    ds = XrayDataset(tiny_dataset, "train", cfg, seed=0)
    unpaired = XrayDataset(tiny_dataset, "train", replace(cfg, paired=False), seed=0)
    border = np.ones((256, 256), bool)
    border[12:-12, 12:-12] = False                   # outside the head: no paste reaches the crop's edge
    for i in range(min(6, len(ds))):
        item = ds[i]
        assert item["image"].shape == (2, 3, 256, 256) and item["label"].tolist() == [0.0, 1.0]
        assert float(item["xray"][0].max()) == 0.0 and float(item["xray"][1].max()) > 0.3
        assert item["index"].tolist() == [i, i] and torch_equal(ds[i]["image"], item["image"])
        real, fake = item["image"].float()
        diff = (real - fake).abs().mean(0)
        seam = torch.nn.functional.interpolate(item["xray"][1][None, None], size=(256, 256))[0, 0] > 0.1
        assert float(diff[seam].mean()) > 2.0                               # they differ along the seam,
        assert float(diff[border].mean()) < 0.25 * float(diff[seam].mean())  # not around the face
        other = unpaired[i]["image"].float()                                # drawn alone, another augmentation
        assert (real - other).abs().mean(0)[border].mean() > 1.0
    batch = paired_collate([ds[0], ds[1]])
    assert batch["image"].shape == (4, 3, 256, 256) and batch["label"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert batch["index"].tolist() == [0, 0, 1, 1]
    val = XrayDataset(tiny_dataset, "val", cfg, seed=0, train=False)        # validation items stay single
    assert val[0]["image"].shape == (3, 256, 256)


def test_paired_training_runs_its_steps_and_refuses_an_odd_batch(tiny_dataset, tmp_path):
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, workers=0,
                      steps_per_epoch=3, log_every=1, sample=SampleConfig(paired=True))
    res = train(cfg)
    assert res.history[-1]["step"] == 3
    with pytest.raises(ValueError, match="even batch size"):
        train(replace(cfg, batch_size=5, out=str(tmp_path / "odd")))


def test_the_default_recipe_parses_with_its_degradations():
    from facexray.train.degrade import DegradeConfig

    cfg = TrainConfig.from_yaml(Path(__file__).parents[1] / "configs/default_model.yaml")
    assert cfg.arch == "xray_efficientnet_lite0" and cfg.imagenet == "auto"
    assert isinstance(cfg.sample.degrade, DegradeConfig) and cfg.sample.degrade.jpeg_quality == (20, 95)
    assert cfg.sample.real_change_prob > 0
    with pytest.raises(ValueError, match="unknown degrade option"):
        SampleConfig.from_dict({"degrade": {"p_jpg": 0.5}})
    with pytest.raises(ValueError, match="unknown sample option"):
        SampleConfig.from_dict({"blur": 1})
    assert SampleConfig.from_dict({"blur": 1, "sbi_prob": 0.2}, strict=False).sbi_prob == 0.2
    assert TrainConfig.from_dict({"imagenet": "none"}).imagenet is None


def test_a_checkpoints_sample_settings_are_its_recipes_and_the_defaults_without_one():
    meta = {"provenance": {"recipe": {"sample": {"sbi_prob": 0.6, "degrade": {"p_small": 0.25}, "gone": 1}}}}
    cfg = SampleConfig.from_checkpoint(meta)
    assert cfg.sbi_prob == 0.6 and cfg.degrade.p_small == 0.25 and cfg.fake_prob == SampleConfig().fake_prob
    assert SampleConfig.from_checkpoint({}) == SampleConfig.from_checkpoint({"provenance": None}) == SampleConfig()


@pytest.mark.parametrize("recipe", sorted(p.relative_to(Path(__file__).parents[1] / "configs").as_posix()
                                         for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml")))
def test_every_shipped_recipe_parses(recipe):
    cfg = TrainConfig.from_yaml(Path(__file__).parents[1] / "configs" / recipe)
    assert cfg.out and cfg.data and cfg.lr > 0
    assert cfg.low_res_size is None or cfg.low_res_size % 32 == 0 and 0 < cfg.low_res_share <= 1


def test_the_second_stage_recipe_restates_only_what_changes_over_its_base():
    root = Path(__file__).parents[1] / "configs"
    base, stage2 = TrainConfig.from_yaml(root / "default_model.yaml"), TrainConfig.from_yaml(root / "default_model_stage2.yaml")
    assert stage2.arch == "xray_efficientnet_lite0_f8" and stage2.init == "runs/default_model/best.safetensors"
    assert stage2.ema_decay and stage2.seed != base.seed and stage2.val_seed == base.val_seed   # same validation set
    assert (stage2.sample, stage2.data, stage2.batch_size) == (base.sample, base.data, base.batch_size)


def test_a_recipe_overrides_its_base_s_nested_settings_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("lr: 0.001\nsample:\n  fake_prob: 0.4\n  degrade: {p_jpeg: 0.3, jpeg_quality: [40, 100]}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nsample:\n  degrade: {p_small: 0.25}\n")
    cfg = TrainConfig.from_yaml(tmp_path / "child.yaml")
    assert (cfg.lr, cfg.sample.fake_prob) == (0.001, 0.4)
    assert (cfg.sample.degrade.p_small, cfg.sample.degrade.p_jpeg, cfg.sample.degrade.jpeg_quality) == (0.25, 0.3, (40, 100))
    small = TrainConfig.from_yaml(Path(__file__).parents[1] / "configs/default_model_stage2_small.yaml")
    stage2 = TrainConfig.from_yaml(Path(__file__).parents[1] / "configs/default_model_stage2.yaml")
    assert replace(small.sample.degrade, p_rescale=0.25, p_small=0.0) == stage2.sample.degrade


def test_init_takes_a_checkpoint_s_weights_into_another_fuse_stride_and_refuses_another_backbone(tmp_path):
    from facexray.models import random_model, save_checkpoint
    from facexray.train.loop import _initial_model

    net, meta = random_model("xray_efficientnet_lite0", crop=CROP)
    path = save_checkpoint(net, tmp_path / "s1.safetensors", crop=meta["crop"])
    started = _initial_model(TrainConfig(arch="xray_efficientnet_lite0_f8", init=str(path)))
    assert started.fuse_stride == 8
    assert all(torch.equal(a, b) for a, b in zip(started.state_dict().values(), net.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit xray_hrnet_w18_small_v2"):
        _initial_model(TrainConfig(arch="xray_hrnet_w18_small_v2", init=str(path)))


def test_ema_weights_are_the_ones_validated_and_a_resumed_run_keeps_its_clock(tiny_dataset, tmp_path):
    from facexray.models.checkpoint import load_checkpoint

    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, workers=0,
                      steps_per_epoch=3, lr=1e-3, warmup_steps=1, ema_decay=0.5, time_budget_s=1000.0)
    train(cfg)
    state = torch.load(tmp_path / "run/last.state.pt", weights_only=True)
    first = json.loads(state["state"])
    saved = load_checkpoint(tmp_path / "run/last.safetensors")[0].state_dict()
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    raw = state["model"]
    assert all(torch.equal(saved[k], ema[k]) for k in saved)                 # the checkpoint holds the average,
    assert any(not torch.equal(saved[k], raw[k]) for k in saved if saved[k].is_floating_point())   # not the raw weights
    assert first["elapsed_s"] > 0
    # resumed with a budget the first run already spent: the clock goes on, so the cosine is at its end
    res = train(TrainConfig(**{**cfg.__dict__, "epochs": 2, "time_budget_s": first["elapsed_s"]}), resume=True)
    later = json.loads(torch.load(tmp_path / "run/last.state.pt", weights_only=True)["state"])
    assert res.epochs_run == 2 and later["step"] == 4 and later["elapsed_s"] > first["elapsed_s"]   # one step, out of time
    log = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert next(r["lr"] for r in log if r.get("step") == 4 and "lr" in r) == 0.0


def test_frozen_modules_keep_their_start_weights_and_statistics_and_the_rest_trains(tiny_dataset, tmp_path):
    from facexray.models import random_model, save_checkpoint
    from facexray.models.checkpoint import load_checkpoint

    net, meta = random_model("xray_efficientnet_lite0", crop=CROP)
    start = save_checkpoint(net, tmp_path / "start.safetensors", crop=meta["crop"])
    frozen = ["backbone._conv_stem", "backbone._bn0", "backbone._blocks.0"]
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), arch="xray_efficientnet_lite0",
                      init=str(start), epochs=1, batch_size=4, workers=0, steps_per_epoch=2, lr=1e-2,
                      warmup_steps=1, freeze=frozen)
    train(cfg)
    before, after = net.state_dict(), load_checkpoint(tmp_path / "run/last.safetensors")[0].state_dict()
    kept = [k for k in before if k.startswith(tuple(n + "." for n in frozen))]
    assert any(k.endswith("running_mean") for k in kept)
    assert all(torch.equal(before[k], after[k]) for k in kept)             # weights and BatchNorm statistics
    trained = [k for k in before if k.startswith("backbone._blocks.1.") and before[k].is_floating_point()]
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    with pytest.raises(ValueError, match="no module named backbone._blocks.99"):
        train(replace(cfg, freeze=["backbone._blocks.99"], out=str(tmp_path / "bad")))
