"""Fault injection: hostile options, broken files, killed processes, a full disk, corrupt shards.

Each case must end in a one-line error with exit code 1 (or a correct run), checked before expensive
work, with no traceback, no orphaned process, no partial or stale file under a final name.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml

from davs.data.ingest import IngestError
from davs.data.ingest_lrw import ingest_lrw
from davs.data.ingest_msceleb import ingest_msceleb
from davs.data.loader import DataError, LRWDecode, make_loader
from davs.resources import lrw_words

from .conftest import CELEB_CFG, LRW_CFG, ROOT


def cli(*args, cwd=ROOT, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def cli_in_process(capfd, *args) -> subprocess.CompletedProcess:
    """``davs ARGS`` in this process (no interpreter start-up), with what it printed; fd-level capture also
    catches anything a child process or a C library writes."""
    from pipeline.cli import main

    handler = signal.getsignal(signal.SIGTERM)
    try:
        rc = main([str(a) for a in args])
    finally:
        signal.signal(signal.SIGTERM, handler)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out, err)


def one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    err = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert len(err) == 1 and needle in err[0], r.stderr[-2000:]


# ---------------------------------------------------------------- davs generate


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from PIL import Image

    from davs.synth.face import FaceRenderer, Identity, Scene

    d = tmp_path_factory.mktemp("gen_inputs")
    Image.fromarray(FaceRenderer(Identity.make(0, 0), Scene()).frame((0.0, 0.5, 0.0), 0.0)).save(d / "face.png")
    from davs.media import write_mp4

    write_mp4(d / "speech.mp4", np.zeros((10, 32, 32, 3), np.uint8), audio=np.zeros(6400, np.float32))
    (d / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(4096))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model_config": {}, "nets": Evil()}, d / "evil.pt")
    return d


GENERATE_CASES = {
    # case: (extra args or replacements, the phrase the one-line error must hold)
    "out_missing_dir": ({"--out": "{tmp}/no/such/dir/o.mp4"}, "does not exist"),
    "out_is_dir": ({"--out": "{tmp}"}, "is a directory"),
    "out_not_mp4": ({"--out": "{tmp}/o.avi"}, "mp4"),
    "batch_0": ({"--batch-size": "0"}, "--batch-size"),
    "fps_0": ({"--fps": "0"}, "--fps"),
    "fps_neg": ({"--fps": "-5"}, "--fps"),
    "fps_nan": ({"--fps": "nan"}, "--fps"),
    "finetune_neg": ({"--finetune-steps": "-1"}, "--finetune-steps"),
    "word_scale_nan": ({"--word-scale": "nan"}, "--word-scale"),
    "word_scale_neg": ({"--word-scale": "-2"}, "--word-scale"),
    "cuda_missing": ({"--device": "cuda"}, "CUDA is not available"),
    "bad_device": ({"--device": "tpu9"}, "device"),
    "garbage_ckpt": ({"--checkpoint": "{inp}/garbage.pt"}, "is not a PyTorch model file"),
    "malicious_ckpt": ({"--checkpoint": "{inp}/evil.pt"}, "refused"),
    "ckpt_is_dir": ({"--checkpoint": "{tmp}"}, "is a directory"),
}


@pytest.mark.parametrize("case", sorted(GENERATE_CASES))
def test_generate_rejects_bad_requests_in_one_line(case, tiny_models, inputs, tmp_path, capfd):
    if case == "cuda_missing" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = {"--face": str(inputs / "face.png"), "--audio": str(inputs / "speech.mp4"),
            "--out": str(tmp_path / "o.mp4"), "--checkpoint": str(tiny_models[0] / "gen.pt")}
    change, needle = GENERATE_CASES[case]
    args |= {k: v.format(tmp=tmp_path, inp=inputs) for k, v in change.items()}
    t0 = time.perf_counter()
    r = cli_in_process(capfd, "generate", *[x for kv in args.items() for x in kv])
    one_line_error(r, needle)
    assert "weights_only=False" not in r.stderr and "file an issue" not in r.stderr
    assert "pwned" not in r.stdout + r.stderr
    assert not list(tmp_path.rglob("*.mp4")), "nothing may be written"
    assert time.perf_counter() - t0 < 60


def test_generate_streams_in_batches(tiny_models, inputs, tmp_path, monkeypatch):
    """Nothing proportional to the audio's length is held: the encoders and the generator see at most a batch
    (plus context), audio is read back in bounded spans, frames are encoded as they are made.
    (benchmarks/generate_memory.py measures the peak RSS this gives on long audio and big photos.)"""
    from davs.inference import Talker
    from davs.inference import generate as G
    from davs.inference import talk as T
    from davs.media import write_mp4

    secs, batch = 12, 16
    t = np.arange(secs * 16000) / 16000
    write_mp4(tmp_path / "a.mp4", np.zeros((secs * 25, 16, 16, 3), np.uint8),
              audio=(0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    talker = Talker(tiny_models[0] / "gen.pt", "cpu", batch_size=batch)
    seen = {"Ea_w": 0, "G": 0, "read": 0, "held_frames": 0}
    for name in ("Ea_w", "G"):
        net = talker.nets[name]
        orig = net.forward

        def spy(*a, _orig=orig, _name=name, **k):
            seen[_name] = max(seen[_name], a[0].shape[1] if _name == "Ea_w" else a[0].shape[0])
            return _orig(*a, **k)

        monkeypatch.setattr(net, "forward", spy)
    orig_read = G.AudioTrack.read

    def read(self, a, b):
        seen["read"] = max(seen["read"], b - a)
        return orig_read(self, a, b)

    monkeypatch.setattr(G.AudioTrack, "read", read)
    made = []
    orig_write = G.write_mp4

    def write(path, frames, **kw):  # count the frames alive when each is encoded: generated but not yet consumed
        def consume():
            for f in frames:
                made.append(1)
                yield f
        orig_write(path, consume(), **kw)

    monkeypatch.setattr(G, "write_mp4", write)
    res = talker.generate(inputs / "face.png", tmp_path / "o.mp4", audio_path=tmp_path / "a.mp4")
    assert res["frames"] == secs * 25 == len(made)
    assert seen["Ea_w"] <= batch + 2 * T.CONTEXT and seen["G"] <= batch, seen
    assert seen["read"] <= 10 * 16000 + 2 * 16000, seen  # spans of <= 10 s (+ the MFCC margins)


def test_chunked_word_features_equal_the_whole_sequence(tiny_models):
    """Chunks with CONTEXT frames either side give the whole-sequence encoder output, to float rounding (the
    identity-subspace removal rescales what is left, rounding with it; a missing context frame is off by O(1))."""
    from davs.data.features import mfcc_windows
    from davs.inference import Talker

    t = Talker(tiny_models[0] / "gen.pt", "cpu", batch_size=7)
    audio = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    n = 75
    with torch.no_grad():
        whole = t.nets["Ea_w"](torch.from_numpy(mfcc_windows(audio, n, 25.0, t.cfg.mfcc_frames, t.cfg.mfcc_coeffs))[None])[0]
    tol = 1e-5 * float(whole.abs().max())
    torch.testing.assert_close(t.audio_words(audio, n), whole, rtol=1e-5, atol=tol)
    t.batch_size = 1000  # one chunk: the same numbers
    torch.testing.assert_close(t.audio_words(audio, n), whole, rtol=1e-5, atol=tol)
    # the slow removal reads frames either side: chunks take that many more frames of context
    t.nets["Ea_w"].nuisance.window.fill_(4)
    t.batch_size = 7
    with torch.no_grad():
        whole = t.nets["Ea_w"](torch.from_numpy(mfcc_windows(audio, n, 25.0, t.cfg.mfcc_frames, t.cfg.mfcc_coeffs))[None])[0]
    torch.testing.assert_close(t.audio_words(audio, n), whole, rtol=1e-5, atol=tol)


# ---------------------------------------------------------------- params


@pytest.mark.parametrize("edit, needle", [
    ({"data": {"num_frames": 40}}, "data.num_frames"),
    ({"model": {"window": 30}}, "model.window"),
    ({"judges": {"max_shift": 28}}, "judges.max_shift"),
    ({"data": {"crop_box": [200, 48, 160]}}, "data.crop_box"),
    ({"data": {"mouth_box": [0.9, 0.25, 0.6, 0.75]}}, "data.mouth_box"),
    ({"ingest": {"msceleb_min_per_identity": 5}}, "ingest.msceleb_min_per_identity"),
    ({"joint": {"num_workers": 9}}, "joint.num_workers"),
    ({"synth": {"test_only_speakers": 10}}, "synth.test_only_speakers"),
])
def test_cross_field_params_are_rejected_by_name(edit, needle, tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, kv in edit.items():
        raw[section].update(kv)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = cli("--params", path, "check-params")
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_malformed_yaml_is_a_message(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("seed: 0", "seed: [0", 1))
    r = cli("--params", path, "check-params")
    assert r.returncode == 1 and "not valid YAML (line" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---------------------------------------------------------------- loader


def test_loader_stops_on_samples_that_all_fail(shards):
    """num_frames beyond the clip (what data.num_frames: 40 did): a message, not an endless warning loop."""
    dec = LRWDecode(40, 0, 5, 0, None, random_sampling=True)
    loader, _ = make_loader(str(shards / "lrw" / "train-*.tar"), dec, batch_size=4, train=True, num_samples=16)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="in a row failed to load; the last: .*40"):
        next(iter(loader))
    assert time.perf_counter() - t0 < 60


def test_corrupt_shard_mid_training_is_skipped_and_counted(shards, tmp_path, caplog):
    """One train shard garbled in the middle: the loader logs it, counts it, and keeps yielding batches."""
    d = tmp_path / "lrw"
    shutil.copytree(shards / "lrw", d)
    tars = sorted(d.glob("train-*.tar"))
    data = bytearray(tars[1].read_bytes())
    data[len(data) // 3 :] = np.random.default_rng(0).bytes(len(data) - len(data) // 3)
    tars[1].write_bytes(bytes(data))
    dec = LRWDecode(25, 2, 5, 0, None, random_sampling=True)
    loader, batches = make_loader(str(d / "train-*.tar"), dec, batch_size=4, train=True, num_samples=64)
    with caplog.at_level("WARNING", logger="davs.data.loader"):
        got = [b["frames"].shape[0] for _, b in zip(range(batches), loader)]
    assert len(got) == batches and all(n == 4 for n in got)
    assert any("skipped a bad sample or shard (1 so far)" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- ingestion


def _tsv_with_a_thin_identity(corpus: Path, tmp_path: Path) -> Path:
    """The tiny TSV plus an identity with 8 rows of which 4 are bad (4 good faces < min 5)."""
    lines = (corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv").read_text().splitlines()
    cols = lines[0].split("\t")
    thin = []
    for i in range(8):
        c = ["m.0thin", *cols[1:]]
        if i % 2:
            c[6] = "!!notbase64!!"
        thin.append("\t".join(c))
    tsv = tmp_path / "faces.tsv"
    tsv.write_text("\n".join(lines + thin) + "\n")
    return tsv


def test_msceleb_counts_only_good_faces(corpus, tmp_path):
    tsv = _tsv_with_a_thin_identity(corpus, tmp_path)
    cfg = type(CELEB_CFG)(**{**CELEB_CFG.__dict__, "max_bad_fraction": 0.2})
    summary = ingest_msceleb(tsv, tmp_path / "out", tmp_path / "dq.json", cfg)
    q = json.loads((tmp_path / "dq.json").read_text())
    assert summary["identities"] == 4 and summary["dropped_identities"] == 1
    assert q["dropped_identities"]["identities"] == ["m.0thin"] and q["bad"] == 4
    man = (tmp_path / "out" / "manifest.csv").read_text()
    assert "m.0thin" not in man and summary["samples"]["train"] > 0


def test_msceleb_without_training_faces_fails_and_publishes_nothing(corpus, tmp_path):
    cfg = replace(CELEB_CFG, msceleb_test_per_identity=6, msceleb_val_per_identity=2)  # 8 per identity
    with pytest.raises(IngestError, match="no training sample"):
        ingest_msceleb(corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv", tmp_path / "out", tmp_path / "dq.json",
                       cfg)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_over_the_bad_fraction_nothing_is_published(corpus, tmp_path):
    """A previous good set stays whole; the failed run leaves no shard, manifest or summary of its own."""
    out = tmp_path / "out"
    ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", LRW_CFG, lrw_words())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    root = tmp_path / "lipread_mp4"
    shutil.copytree(corpus / "lipread_mp4", root)
    for p in sorted(root.rglob("*.mp4"))[:3]:
        p.write_bytes(b"\x00" * 64)
    (root / "ABOUT" / "test" / "EXTRA.mp4").write_bytes(b"\x00")  # and the tree differs
    with pytest.raises(IngestError, match="inputs bad"):
        ingest_lrw(root, out, tmp_path / "dq.json", LRW_CFG, lrw_words())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging left"


def _ingest_cmd(corpus: Path, out: Path, workers: int = 2) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests import configs; "
            "from davs.data.ingest_lrw import ingest_lrw; from davs.resources import lrw_words;"
            f"ingest_lrw({str(corpus / 'lipread_mp4')!r}, {str(out)!r}, {str(out.parent / 'dq.json')!r}, "
            f"configs.lrw_ingest(image_size=32, shard_max_samples=2, min_shards=2, workers={workers}), lrw_words())")
    return [sys.executable, "-c", code]


def test_sigkill_during_ingestion_leaves_no_worker_and_no_stale_file(corpus, tmp_path):
    out = tmp_path / "shards"
    ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", LRW_CFG, lrw_words())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(_ingest_cmd(corpus, out), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and len(me.children(recursive=True)) < 3:  # tracker + 2 workers
        time.sleep(0.2)
    kids = me.children(recursive=True)
    assert len(kids) >= 2, "workers never started"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, [p.cmdline()[:3] for p in alive]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old set, whole; nothing new beside it
    ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", LRW_CFG, lrw_words())  # a rerun cleans up
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_during_ingestion_cleans_up(corpus, tmp_path):
    """SIGTERM unwinds: exit 143, the staging directory removed, no worker left."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "shards"
    code = ("import signal, sys; from pipeline.cli import _terminate; signal.signal(signal.SIGTERM, _terminate);"
            + _ingest_cmd(corpus, out)[2])
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".shards.staging-*/*.tar")):
        time.sleep(0.1)
    kids = me.children(recursive=True)
    proc.terminate()
    assert proc.wait(timeout=60) == 143
    _, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive
    assert not out.exists() and not list(tmp_path.glob(".shards*"))


def test_sigterm_after_the_work_exits_quietly(tmp_path):
    """A SIGTERM that lands once the command is done (here: inside a library's atexit hook, as torch's
    compile-time dump was when CI caught it) exits 143 without a traceback; raising there would print one."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import atexit, os, signal, sys, time; from pipeline.cli import main;"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(5), print('not killed')));"
            f"sys.exit(main(['--params', {str(ROOT / 'params.yaml')!r}, 'check-params']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 143, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "not killed" not in r.stdout, r.stderr[-2000:]
    assert '"data"' in r.stdout  # the command's own output was flushed before the exit


def _limit_file_size(limit: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def test_disk_full_during_shard_writing(corpus, tmp_path):
    """A write that fails mid-shard (a size-limited file stands in for a full disk): a one-line error,
    exit 1, nothing published, no temp file left."""
    root = tmp_path / "repo"
    root.mkdir()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["lrw_root"] = str(corpus / "lipread_mp4")
    raw["data"]["shards_dir"] = str(tmp_path / "shards")
    raw["ingest"]["workers"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest-lrw"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300, preexec_fn=_limit_file_size(60_000))
    one_line_error(r, "File too large")
    assert not (tmp_path / "shards" / "lrw").exists()
    leftovers = [p for p in (tmp_path / "shards").rglob("*")] if (tmp_path / "shards").exists() else []
    assert not leftovers, leftovers


def test_tar_with_a_bad_member_is_readable_up_to_it(shards, tmp_path):
    """A truncated shard (a disk filled while a reader copied it) is read up to the cut, then skipped."""
    src = sorted((shards / "lrw").glob("val-*.tar"))[0]
    cut = tmp_path / "val-000000.tar"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with tarfile.open(src) as t:
        total = len({m.name.split(".")[0] for m in t.getmembers()})
    dec = LRWDecode(25, 2, 5, 0, None, random_sampling=False)
    loader, _ = make_loader([str(cut)], dec, batch_size=1, train=False, num_samples=total)
    got = sum(len(b["key"]) for b in loader)
    assert 0 < got < total
