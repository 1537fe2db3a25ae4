"""The three stages train, checkpoint, resume after a kill to the same weights, and guard against NaN."""

import math
from dataclasses import replace

import pytest
import torch

from davs.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from davs.data.spec import model_config_for
from davs.training.runners import run_disent, run_gen, run_joint
from davs.training.tasks import DisentTask, JointTask

from . import configs
from .conftest import CPU, SIZES
from .conftest import tiny_data as _data


@pytest.fixture(scope="module")
def trained(tiny_models):
    return tiny_models


def test_stages_write_models_that_load_weights_only(trained):
    out, cfg, (m1, m2, m3), logged = trained
    for stage in ("joint", "disent", "gen"):
        ck = torch.load(out / f"{stage}.pt", weights_only=True)
        assert ck["stage"] == stage and ck["model_config"] == cfg.to_dict()
    assert {"Ev_w", "Ea_w", "Ep", "Cw", "Cp", "D_domain"} <= set(load_model(out / "joint.pt")["nets"])
    disent = load_model(out / "disent.pt")
    assert {"Cw_p", "Cp_w"} <= set(disent["nets"]) and "Cs_w" not in disent["nets"]  # no speaker adversary
    for enc in ("Ev_w", "Ea_w"):  # the identity subspace was fitted after the adversarial steps and is kept
        basis, readout = disent["nets"][enc]["nuisance.basis"], disent["nets"][enc]["nuisance.readout"]
        assert basis.shape == readout.shape == (cfg.feat_dim, cfg.identity_rank)
        # a projection (either form): what it removes, it removes whole
        assert torch.allclose(readout.T @ basis, torch.eye(cfg.identity_rank), atol=1e-4)
        for k, v in (("basis", basis), ("readout", readout)):  # gen keeps it
            assert torch.equal(load_model(out / "gen.pt")["nets"][enc][f"nuisance.{k}"], v)
    assert m2["identity/fit_clips"] > 0 and "head/val/acc/word_video" in m2
    assert {"G", "D_temporal"} <= set(load_model(out / "gen.pt")["nets"])
    assert "val/acc/word_audio" in m1 and "val/acc/dis_word_from_id" in m2 and "val/l1_copy_ref" in m3
    assert all(math.isfinite(v) for m in (m1, m2, m3) for v in m.values())
    steps = [s for s, m in logged if "train/loss/word_video" in m]
    assert steps == [3, 6]
    assert all(k.startswith(("train/", "perf/")) for s, m in logged if s == 3 for k in m)


def test_disent_starts_from_joint_encoders(trained):
    out = trained[0]
    j, d = load_model(out / "joint.pt")["nets"], load_model(out / "disent.pt")["nets"]
    g = load_model(out / "gen.pt")["nets"]
    # gen freezes the encoders it took from disent
    for k, v in d["Ep"].items():
        assert torch.equal(v, g["Ep"][k])
    assert any(not torch.equal(v, d["Ev_w"][k]) for k, v in j["Ev_w"].items())  # disent trained them further


def test_disent_loads_the_encoders_it_is_given(trained, shards, tmp_path):
    """Mark joint's encoders (+0.5 on every weight), train disent one step from the marked file: its encoders
    are the marked ones (a fresh or seeded init, which a few tiny joint steps barely leave, would not be). The
    identity subspace (``nuisance.*``) is not compared: disent fits it anew."""
    from davs.checkpoint import save_checkpoint

    out, cfg, *_ = trained
    ck = load_model(out / "joint.pt")
    for name in ("Ev_w", "Ea_w", "Ep"):
        ck["nets"][name] = {k: v + 0.5 if v.is_floating_point() and "running" not in k else v
                            for k, v in ck["nets"][name].items()}
    save_checkpoint(tmp_path / "marked.pt", ck)
    run_disent(_data(shards), cfg, configs.loop(steps=1, log_every=1, val_every=100, ckpt_every=100),
               configs.disent(lr=1e-6), tmp_path / "marked.pt", tmp_path / "disent.pt", CPU)
    d = load_model(tmp_path / "disent.pt")["nets"]
    for name in ("Ev_w", "Ea_w", "Ep"):
        keys = [k for k, v in d[name].items() if v.is_floating_point() and "running" not in k
                and not k.startswith("nuisance.")]
        to_marked = max(float((d[name][k] - ck["nets"][name][k]).abs().max()) for k in keys)
        assert to_marked < 0.05, (name, to_marked)  # 0.5 away had it not loaded them


def test_model_mismatch_is_a_clear_error(trained):
    out, cfg, *_ = trained
    with pytest.raises(CheckpointError, match="feat_dim: checkpoint 32 vs configured 64"):
        load_model(out / "joint.pt", replace(cfg, feat_dim=64))
    with pytest.raises(CheckpointError, match="not found"):
        load_model(out / "nope.pt", cfg)
    (out / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is not a PyTorch model file"):
        load_model(out / "junk.pt", cfg)


class _Killed(Exception):
    pass


def assert_same_nets(straight: dict, resumed: dict) -> None:
    """Every weight of an uninterrupted run's model file equals the resumed run's."""
    for part in straight:
        for k, v in straight[part].items():
            torch.testing.assert_close(v, resumed[part][k], msg=f"{part}.{k} differs after resume")


def test_resume_after_kill_matches_an_uninterrupted_run(shards, tmp_path, caplog):
    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    logs: dict[str, list] = {}

    def run(ckpt, out, kill_at=None):
        loop = configs.loop(steps=6, log_every=2, val_every=3, ckpt_every=2, checkpoint=str(ckpt))
        logs[out.stem] = []

        def callback(s, m):
            if s == kill_at:
                raise _Killed
            logs[out.stem].append((s, m))

        run_joint(data, cfg, loop, configs.joint(), out, CPU, callback)
        return load_model(out)["nets"]

    straight = run(tmp_path / "a" / "last.pt", tmp_path / "a.pt")
    with pytest.raises(_Killed):  # killed during step 6, after the step-4 checkpoint
        run(tmp_path / "b" / "last.pt", tmp_path / "b.pt", kill_at=6)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    with caplog.at_level("INFO"):
        resumed = run(tmp_path / "b" / "last.pt", tmp_path / "b.pt")
    assert "at step 4" in caplog.text
    assert_same_nets(straight, resumed)
    # the live metrics too: the resumed run replays the records logged before its checkpoint (DVC deleted the
    # killed run's dvclive/ before the rerun), so its callback sees what the uninterrupted run's saw
    clean = lambda log: [(s, {k: v for k, v in m.items() if not k.startswith("perf/")}) for s, m in log]  # noqa: E731
    assert [s for s, _ in logs["a"]] == [2, 3, 4, 6, 6]
    assert clean(logs["b"]) == clean(logs["a"])
    # a checkpoint written with other params is not resumed from
    other = replace(cfg, feat_dim=16)
    loop = configs.loop(steps=2, ckpt_every=2, val_every=100, checkpoint=str(tmp_path / "b" / "last.pt"))
    run_joint(data, other, loop, configs.joint(), tmp_path / "c.pt", CPU)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2


def test_finished_run_resumes_with_metrics_and_other_code_retrains(shards, tmp_path, monkeypatch, caplog):
    import davs.training.runners as S

    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    loop = configs.loop(steps=2, val_every=100, ckpt_every=2, checkpoint=str(tmp_path / "last.pt"))
    first = run_joint(data, cfg, loop, configs.joint(), tmp_path / "a.pt", CPU)
    with caplog.at_level("INFO"):
        again = run_joint(data, cfg, loop, configs.joint(), tmp_path / "b.pt", CPU)
    assert "resumed from" in caplog.text and again == first  # nothing to train, metrics still reported
    caplog.clear()
    monkeypatch.setattr(S, "code_hash", lambda entries: "edited-code")
    with caplog.at_level("INFO"):
        run_joint(data, cfg, loop, configs.joint(), tmp_path / "c.pt", CPU)
    assert "ignoring" in caplog.text and "resumed from" not in caplog.text


def test_other_shards_or_init_weights_retrain(shards, corpus, trained, tmp_path, caplog):
    """Re-ingesting with fewer clips (same paths) or a changed init model file is not resumed from."""
    import shutil

    from davs.data.ingest_lrw import ingest_lrw
    from davs.resources import lrw_words

    from .conftest import LRW_CFG

    work = tmp_path / "shards"
    shutil.copytree(shards, work)
    data = _data(work)
    cfg = model_config_for(data, **SIZES)
    loop = configs.loop(steps=2, val_every=100, ckpt_every=2, checkpoint=str(tmp_path / "last.pt"))
    run_joint(data, cfg, loop, configs.joint(), tmp_path / "a.pt", CPU)
    ingest_lrw(corpus / "lipread_mp4", work / "lrw", tmp_path / "dq.json", replace(LRW_CFG, max_clips_per_word=3),
               lrw_words())
    with caplog.at_level("INFO"):
        run_joint(data, cfg, loop, configs.joint(), tmp_path / "b.pt", CPU)
    assert "ignoring" in caplog.text and "resumed from" not in caplog.text

    init = tmp_path / "joint.pt"
    shutil.copy(trained[0] / "joint.pt", init)
    dloop = replace(loop, checkpoint=str(tmp_path / "dlast.pt"))
    run_disent(data, cfg, dloop, configs.disent(), init, tmp_path / "d.pt", CPU)
    ck = load_checkpoint(init)
    ck["nets"]["Ev_w"] = {k: v + 1 for k, v in ck["nets"]["Ev_w"].items()}
    save_checkpoint(init, ck)
    caplog.clear()
    with caplog.at_level("INFO"):
        run_disent(data, cfg, dloop, configs.disent(), init, tmp_path / "d2.pt", CPU)
    assert "ignoring" in caplog.text and "resumed from" not in caplog.text


def test_disent_resume_carries_the_dis_classifier_memory(trained, shards, tmp_path):
    data = _data(shards)
    out, cfg, _, _ = trained
    w = configs.disent(dis_steps=2, dis_memory=3)

    def run(steps, ckpt, dst):
        loop = configs.loop(steps=steps, log_every=2, val_every=100, ckpt_every=2, checkpoint=str(ckpt))
        run_disent(data, cfg, loop, w, out / "joint.pt", dst, CPU)
        return load_model(dst)["nets"]

    straight = run(6, tmp_path / "a" / "last.pt", tmp_path / "a.pt")
    run(4, tmp_path / "b" / "last.pt", tmp_path / "b4.pt")
    assert len(load_checkpoint(tmp_path / "b" / "last.pt")["task"]["_extra_state"]["memory"]) == 3
    resumed = run(6, tmp_path / "b" / "last.pt", tmp_path / "b.pt")
    assert_same_nets(straight, resumed)


def test_end_to_end_gen_fights_the_speaker_adversary_and_resumes_with_its_memory(trained, shards, tmp_path):
    """gen.clip_id_weight: the encoders trained with G keep disent's label-free adversary, whose memory travels
    in the checkpoint (a resumed run equals an uninterrupted one); off, the memory stays empty."""
    data = _data(shards)
    out, cfg, _, _ = trained
    w = configs.gen(train_encoders=True, clip_id_weight=10.0, disent=configs.disent(clip_id_memory=3))
    logged: dict[str, float] = {}

    def run(steps, ckpt, dst, gen=w):
        loop = configs.loop(steps=steps, log_every=1, val_every=100, ckpt_every=2, checkpoint=str(ckpt),
                            optimizer="adam")
        run_gen(data, cfg, loop, gen, out / "disent.pt", dst, CPU, lambda s, m: logged.update(m))
        return load_model(dst)["nets"]

    straight = run(4, tmp_path / "a" / "last.pt", tmp_path / "a.pt")
    assert logged["train/loss/clip_id_from_audio_word"] >= 0 and "train/acc/clip_id_from_video_word_r2" in logged
    run(2, tmp_path / "b" / "last.pt", tmp_path / "b2.pt")
    assert len(load_checkpoint(tmp_path / "b" / "last.pt")["task"]["_extra_state"]["id_memory"]) == 2
    resumed = run(4, tmp_path / "b" / "last.pt", tmp_path / "b.pt")
    assert_same_nets(straight, resumed)
    logged.clear()
    run(2, tmp_path / "c" / "last.pt", tmp_path / "c.pt", replace(w, clip_id_weight=0.0))
    assert "train/loss/clip_id_from_audio_word" not in logged
    assert load_checkpoint(tmp_path / "c" / "last.pt")["task"]["_extra_state"]["id_memory"] == []


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_same_seed_same_result(shards, tmp_path, bf16):
    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    outs = []
    for i in range(2):
        loop = configs.loop(steps=3, val_every=100, seed=5, amp=bf16, amp_on_cpu=bf16)
        run_joint(data, cfg, loop, configs.joint(), tmp_path / f"{i}.pt", CPU)
        outs.append(load_model(tmp_path / f"{i}.pt")["nets"])
    for part in outs[0]:
        for k, v in outs[0][part].items():
            assert torch.equal(v, outs[1][part][k]), f"{part}.{k}"


def test_validation_cadence_does_not_change_training(shards, tmp_path):
    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    outs = []
    for i, every in enumerate((1, 100)):
        run_joint(data, cfg, configs.loop(steps=3, val_every=every), configs.joint(), tmp_path / f"{i}.pt", CPU)
        outs.append(load_model(tmp_path / f"{i}.pt")["nets"])
    for part in outs[0]:
        for k, v in outs[0][part].items():
            assert torch.equal(v, outs[1][part][k]), f"{part}.{k}"


def test_nan_guard_stops_the_run(shards, tmp_path, monkeypatch):
    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    orig = JointTask.losses

    def poisoned(self, phase):
        out = orig(self, phase)
        if phase == "main":
            out["loss/identity"] = out["loss/identity"] * float("nan")
        return out

    monkeypatch.setattr(JointTask, "losses", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0, phase main.*loss/identity"):
        run_joint(data, cfg, configs.loop(steps=2, val_every=100), configs.joint(), tmp_path / "x.pt", CPU)


@pytest.mark.parametrize("amp_on_cpu", [True, False])
def test_bf16_autocast_step_runs_on_cpu(shards, tmp_path, monkeypatch, amp_on_cpu):
    """With amp on a CPU that has bf16 units, the training steps' convolutions run in bf16 (and the losses stay
    finite); without, in fp32. The dtypes are read from the convolutions themselves, so a loop that never
    enters autocast fails."""
    seen: set[torch.dtype] = set()
    conv = torch.nn.Conv2d.forward

    def recording(self, x):
        out = conv(self, x)
        if self.training:
            seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording)
    data = _data(shards)
    cfg = model_config_for(data, **SIZES)
    loop = configs.loop(steps=2, val_every=100, amp=True, amp_on_cpu=amp_on_cpu)
    metrics = run_joint(data, cfg, loop, configs.joint(), tmp_path / "amp.pt", CPU)
    assert all(math.isfinite(v) for v in metrics.values())
    assert seen == ({torch.bfloat16} if amp_on_cpu else {torch.float32})


def test_dis_classifiers_take_several_updates_on_a_feature_memory(trained, shards, tmp_path, monkeypatch):
    data = _data(shards)
    seen = []
    orig = DisentTask.losses

    def spy(self, phase):
        out = orig(self, phase)
        if phase == "dis":
            seen.append((self.step, len(self.memory), sum(len(e["word"]) for e in self.memory)))
        return out

    monkeypatch.setattr(DisentTask, "losses", spy)
    w = configs.disent(dis_steps=3, dis_memory=2)
    out, cfg, _, _ = trained
    run_disent(data, cfg, configs.loop(steps=3, val_every=100), w, out / "joint.pt", tmp_path / "d.pt", CPU)
    assert [s for s, _, _ in seen] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # three dis updates per step
    assert [m for _, m, _ in seen] == [1, 1, 1, 2, 2, 2, 2, 2, 2]  # the memory holds the last two steps
    assert seen[-1][2] == 2 * data.batch_size  # the dis-classifiers train on both steps' clips


def test_atomic_checkpoint_write(tmp_path, monkeypatch):
    """A write that dies half-way (kill, full disk) leaves the previous checkpoint whole and no temp file."""
    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    real_save = torch.save

    def dies_half_way(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(40)  # what a kill mid-write leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("davs.checkpoint.torch.save", dies_half_way)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["w"], torch.ones(2))


def test_weight_decay_spares_biases_and_norms():
    """Decay only weight matrices and kernels (dim >= 2): a decayed GroupNorm scale or bias shrinks toward 0
    for nothing."""
    from davs.training.loop import make_optimizers

    task = JointTask(configs.model(image_size=32, feat_dim=32, width=8, num_words=5, num_ids=4), configs.joint())
    opts = make_optimizers(task, configs.loop(steps=1, weight_decay=0.1))
    seen = []
    for phase, opt in opts.items():
        for g in opt.param_groups:
            for p in g["params"]:
                assert g["weight_decay"] == (0.1 if p.dim() >= 2 else 0.0), (phase, tuple(p.shape), g["weight_decay"])
                seen.append(p)
    assert any(p.dim() < 2 for p in seen) and any(p.dim() >= 2 for p in seen)
    trainable = [p for ph in task.phases for p in task.phase_params(ph) if p.requires_grad]
    assert len(seen) == len(trainable) and {id(p) for p in seen} == {id(p) for p in trainable}


class _Toy(torch.nn.Module):
    """A one-phase task whose returned losses and weights the test chooses."""

    phases = ("main",)
    streams = ("x",)
    step = 0
    conditional_losses: tuple[str, ...] = ()

    def __init__(self, returns: tuple[str, ...], weights: dict[str, float]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.returns, self.weights = returns, weights

    def phase_params(self, phase):
        return [self.w]

    def phase_lr(self, phase):
        return 0.1

    def phase_betas(self, phase):
        return (0.9, 0.999)

    def phase_repeats(self, phase):
        return 1

    def loss_weights(self):
        return self.weights

    def begin_step(self, batch, device):
        self.batch = batch

    def losses(self, phase):
        return {k: (self.w * (i + 1)).pow(2).mean() for i, k in enumerate(self.returns)}


@pytest.mark.parametrize("returns,weights,needle", [
    (("loss/a", "loss/b"), {"loss/a": 1.0}, "no weight for ['loss/b']"),  # a typo'd or forgotten weight
    (("loss/a",), {"loss/a": 1.0, "loss/c": 0.5}, "weights ['loss/c'], which no phase returned"),
])
def test_loss_weights_must_match_the_losses(returns, weights, needle):
    from davs.training.loop import train
    from davs.training.streams import Stream

    task = _Toy(returns, weights)
    with pytest.raises(KeyError) as e:
        train(task, {"x": Stream([0, 0], 2)}, configs.loop(steps=2, log_every=1), CPU)
    assert needle in str(e.value)
    ok = _Toy(("loss/a", "loss/b"), {"loss/a": 1.0, "loss/b": 0.0, "loss/unused_but_zero": 0.0})
    train(ok, {"x": Stream([0, 0], 2)}, configs.loop(steps=2, log_every=1), CPU)  # zero weights may go unused


def test_training_benchmark_writes_its_fields(shards, tmp_path):
    """benchmarks/train.py (the tool for the CPU and GPU throughput figures) runs a stage and writes its row."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    out = tmp_path / "train.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train.py"), "--stage", "gen", "--image-size", "32",
                        "--steps", "2", "--warmup", "1", "--batch-size", "2", "--workers", "0", "--profile",
                        "--shards", str(shards / "lrw"), str(shards / "msceleb"), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["stage"] == "gen" and row["steps_timed"] == 2 and row["image_size"] == 32
    assert 0 <= row["data_fraction"] <= 1 and row["steps_per_s"] > 0 and row["peak_mem_gb"] > 0
    assert 0 < row["profile"]["matmul_conv_fraction"] <= 1 and row["profile"]["top_ops"]


def test_the_resume_state_keeps_the_gpu_generator_on_cuda(monkeypatch):
    """Dropout on a GPU draws from the device's generator: a CUDA run's checkpoint keeps it and a resume
    restores it (faked here: the calls torch makes on a GPU); a CPU run's and an older file's hold the CPU's."""
    from davs.training import resume

    gpu = {"state": torch.arange(4, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: gpu["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: gpu.update(state=s.clone()))
    cuda = torch.device("cuda", 0)
    saved = resume.rng_state(cuda)
    assert set(saved) == {"cpu", "cuda"}
    gpu["state"] = torch.zeros(4, dtype=torch.uint8)
    resume.set_rng_state(saved, cuda)
    assert torch.equal(gpu["state"], torch.arange(4, dtype=torch.uint8))
    assert set(resume.rng_state(CPU)) == {"cpu"}
    torch.manual_seed(7)
    old = torch.get_rng_state()
    first = torch.rand(3)
    resume.set_rng_state(old, CPU)  # a checkpoint of before: the CPU's state alone
    assert torch.equal(torch.rand(3), first)


def test_gen_with_word_context_trains_the_context_and_talks_the_same_in_any_chunks(trained, shards, tmp_path):
    """model.gen_context: gen trains G's temporal read of the words (it moves off the identity it starts as), and
    davs generate's chunked stream gives the frames the whole sequence gives."""
    import numpy as np

    from davs.inference import Talker

    data = _data(shards)
    out, cfg, _, _ = trained
    ctx = replace(cfg, gen_context=2)
    loop = configs.loop(steps=3, log_every=1, val_every=100, ckpt_every=100, optimizer="adam")
    run_gen(data, ctx, loop, configs.gen(), out / "disent.pt", tmp_path / "gen.pt", CPU)
    g = load_model(tmp_path / "gen.pt")["nets"]["G"]
    eye = torch.zeros_like(g["word_context.weight"])
    eye[:, :, 2] = torch.eye(cfg.feat_dim)
    assert not torch.allclose(g["word_context.weight"], eye)  # trained: the neighbours count
    words = torch.randn(11, cfg.feat_dim)
    crop = np.zeros((cfg.image_size, cfg.image_size, 3), np.uint8)
    talker = Talker(tmp_path / "gen.pt", "cpu", batch_size=3)
    streamed = torch.cat(list(talker._g_words(iter(words.split(4)))))  # as word_chunks hands them over
    torch.testing.assert_close(streamed, torch.cat(list(talker._g_words(words))), atol=1e-5, rtol=0)
    whole = Talker(tmp_path / "gen.pt", "cpu", batch_size=64).animate(crop, words)
    assert np.abs(whole.astype(int) - talker.animate(crop, words).astype(int)).max() <= 1  # G in batches of 3
