"""Ingestion: bad inputs are skipped, counted and reported; shards are atomic, deterministic, faithful."""

import base64
import hashlib
import json
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from davs.data.features import align_audio, mfcc_windows, word_mask
from davs.data.ingest import IngestError
from davs.data.ingest_lrw import ingest_lrw
from davs.data.ingest_msceleb import ingest_msceleb
from davs.data.loader import LRWDecode, decode_celeb, make_loader
from davs.data.lrw import BadSample, ClipRef, list_clips, parse_duration, read_clip
from davs.data.msceleb import decode_row, read_recordio, write_recordio
from davs.data.order import SharedEpoch
from davs.media import write_mp4
from davs.resources import lrw_words

from .conftest import CELEB_CFG, LRW_CFG


def _sha(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)}


@pytest.fixture
def broken_lrw(corpus, tmp_path) -> Path:
    """A copy of the tiny LRW tree with one clip broken in each way ingestion must survive."""
    root = tmp_path / "lipread_mp4"
    shutil.copytree(corpus / "lipread_mp4", root)
    train = sorted((root / "ABOUT" / "train").glob("*.mp4"))
    # corrupt: random bytes; truncated: first half of a real file
    train[0].write_bytes(np.random.default_rng(0).bytes(5000))
    data = train[1].read_bytes()
    train[1].write_bytes(data[: len(data) // 2])
    # no audio track
    frames = np.zeros((29, 256, 256, 3), np.uint8)
    write_mp4(train[2], frames)
    # wrong frame count
    write_mp4(train[3], frames[:20], audio=np.zeros(20 * 640, np.float32))
    # missing and unreadable .txt
    train[4].with_suffix(".txt").unlink()
    (root / "MONEY" / "train" / "MONEY_00001.txt").write_text("Text:  MONEY\nConf:  3\n\nno duration here\n")
    return root


def test_lrw_bad_inputs_are_skipped_counted_and_listed(broken_lrw, tmp_path):
    report = tmp_path / "dq.json"
    cfg = type(LRW_CFG)(**{**LRW_CFG.__dict__, "max_bad_fraction": 0.5})
    summary = ingest_lrw(broken_lrw, tmp_path / "shards", report, cfg, lrw_words())
    q = json.loads(report.read_text())
    assert q["total"] == 33 and q["bad"] == 6 and q["passed"]
    reasons = {Path(b["item"]).name: b["reason"] for b in q["bad_items"]}
    assert reasons["ABOUT_00001.mp4"].startswith("corrupt mp4")
    assert reasons["ABOUT_00002.mp4"].startswith(("corrupt mp4", "truncated", "wrong frame count", "audio too short"))
    assert reasons["ABOUT_00003.mp4"].startswith("missing or corrupt audio")
    assert reasons["ABOUT_00004.mp4"].startswith("wrong frame count 20")
    assert reasons["ABOUT_00005.mp4"] == "missing .txt"
    assert "Duration" in reasons["MONEY_00001.mp4"]
    assert sum(summary["samples"].values()) == 27
    assert not list((tmp_path / "shards").glob(".*")), "no temporary files may remain"


def test_lrw_fails_past_the_bad_fraction_but_writes_the_report(broken_lrw, tmp_path):
    report = tmp_path / "dq.json"
    with pytest.raises(IngestError, match="6/33 inputs bad"):
        ingest_lrw(broken_lrw, tmp_path / "shards", report, LRW_CFG, lrw_words())
    assert json.loads(report.read_text())["passed"] is False


def test_msceleb_bad_rows(corpus, tmp_path):
    lines = (corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv").read_text().splitlines()
    cols = lines[0].split("\t")
    bad = [
        "\t".join(cols[:5]),  # wrong column count
        "\t".join(cols[:6] + ["!!notbase64!!"]),  # bad base64
        "\t".join(cols[:6] + [base64.b64encode(b"GIF89a not a jpeg").decode()]),  # not a JPEG
        "\t".join(cols[:5] + ["AAAA"] + cols[6:]),  # rectangle of 3 bytes
    ]
    tsv = tmp_path / "faces.tsv"
    tsv.write_text("\n".join(lines[:10] + bad + lines[10:]) + "\n")
    report = tmp_path / "dq.json"
    cfg = type(CELEB_CFG)(**{**CELEB_CFG.__dict__, "max_bad_fraction": 0.2})
    summary = ingest_msceleb(tsv, tmp_path / "shards", report, cfg)
    q = json.loads(report.read_text())
    assert q["bad"] == 4 and q["total"] == len(lines) + 4
    kinds = sorted(b["reason"] for b in q["bad_items"])
    assert any(k.startswith("wrong column count 5") for k in kinds)
    assert any(k == "bad base64 in FaceData" for k in kinds)
    assert any(k == "FaceData is not a JPEG" for k in kinds)
    assert any(k.startswith("FaceRectangle is 3 bytes") for k in kinds)
    assert all(":" in b["item"] for b in q["bad_items"])  # file:line
    assert sum(summary["samples"].values()) == len(lines)
    cfg = type(CELEB_CFG)(**{**CELEB_CFG.__dict__, "max_bad_fraction": 0.01})
    with pytest.raises(IngestError):
        ingest_msceleb(tsv, tmp_path / "shards2", tmp_path / "dq2.json", cfg)


def test_msceleb_identity_caps_and_splits(shards):
    man = (shards / "msceleb" / "manifest.csv").read_text().splitlines()[1:]
    per = {}
    for row in man:
        key, mid, label, split, shard = row.split(",")
        per.setdefault(mid, []).append(split)
    assert len(per) == 4
    for splits in per.values():
        assert splits.count("test") == 2 and splits.count("val") == 2 and splits.count("train") == 4


def test_recordio_reader(tmp_path, corpus):
    line = (corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv").read_text().splitlines()[0]
    jpeg = decode_row(line, "x").jpeg
    write_recordio(tmp_path / "train.rec", [(0, jpeg), (0, jpeg), (1, jpeg), (1, b"notajpeg")])
    items = list(read_recordio(tmp_path / "train.rec"))
    good = [x for _, x in items if not isinstance(x, BadSample)]
    bad = [x for _, x in items if isinstance(x, BadSample)]
    assert [g.mid for g in good] == ["rec:0", "rec:0", "rec:1"]
    assert len(bad) == 1 and "not a JPEG" in str(bad[0])


def test_rerun_gives_identical_shards_and_no_partial_file(corpus, tmp_path):
    out = tmp_path / "a"
    ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", LRW_CFG, lrw_words())
    first = _sha(out.glob("*.tar"))
    # an interrupted run leaves a temp file; the rerun cleans it and rewrites the same bytes
    (out / ".train-000000.tar.tmp").write_bytes(b"partial")
    (out / "train-000000.tar").write_bytes(b"stale")
    ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", LRW_CFG, lrw_words())
    assert _sha(out.glob("*.tar")) == first
    assert not list(out.glob(".*"))
    assert len(first) >= 2 * 3  # at least min_shards per split
    for tar in out.glob("*.tar"):
        with tarfile.open(tar) as t:
            names = t.getnames()
        assert names and all("." not in n.split(".")[0] for n in names)


def test_shard_set_identity_depends_only_on_the_data(corpus, tmp_path):
    """summary.json and manifest.csv (which DVC hashes and resume fingerprints) hold no timings, memory or
    worker counts: 1 worker and 2 workers give the same bytes, so the same data hashes the same anywhere."""
    from dataclasses import replace

    from davs.provenance import SHARD_METADATA, shards_hash

    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        res = ingest_lrw(corpus / "lipread_mp4", out, tmp_path / "dq.json", replace(LRW_CFG, workers=workers),
                         lrw_words())
        assert res["perf"]["workers"] == workers and "seconds" in res["perf"]
        runs[workers] = out
    summary = json.loads((runs[1] / "summary.json").read_text())
    assert not {"seconds", "workers", "peak_rss_main_mb", "perf"} & set(summary)
    assert _sha(runs[1].glob("*")) == _sha(runs[2].glob("*"))
    assert shards_hash(runs[1]) == shards_hash(runs[2])
    fewer = tmp_path / "fewer"
    ingest_lrw(corpus / "lipread_mp4", fewer, tmp_path / "dq.json", replace(LRW_CFG, max_clips_per_word=3), lrw_words())
    assert shards_hash(fewer) != shards_hash(runs[1])
    assert "manifest.csv" in SHARD_METADATA


def test_loader_yields_what_the_reader_read(corpus, shards):
    refs = [r for r in list_clips(corpus / "lipread_mp4") if r.split == "val"]
    loader, _ = make_loader(str(shards / "lrw" / "val-*.tar"), LRWDecode(25, 2, 5, 0, None, False), batch_size=4,
                            train=False, num_samples=len(refs))
    batches = list(loader)
    got = {k: i for b in batches for i, k in enumerate(b["key"])}
    assert sorted(got) == sorted(r.key for r in refs)
    b0 = batches[0]
    ref = next(r for r in refs if r.key == b0["key"][0])
    clip = read_clip(ref, LRW_CFG.crop_box, LRW_CFG.image_size)
    np.testing.assert_array_equal(b0["mfcc"][0].numpy(), clip.mfcc[2:27])
    np.testing.assert_array_equal(b0["mask"][0].numpy(), clip.mask[2:27])
    diff = b0["frames"][0].numpy().astype(float) - clip.frames[2:27].astype(float)
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 30  # JPEG at quality 92, 4:4:4 (the exact frames are the npy format's)
    assert b0["frames"].shape == (4, 25, 32, 32, 3) and b0["mfcc"].shape == (4, 25, 20, 12)


def test_train_loader_is_seeded_and_balanced(shards):
    """Same seed, same batches; another seed, others. Balanced as a shuffled shard cycle is: an epoch is
    ``n`` batches of a shuffle buffer over the cycling shards (not an exact permutation), and over ten epochs
    every training clip is drawn, none more than about 1.5 times its share (a loader stuck on some shards, or
    replaying one epoch's order, fails this)."""
    from collections import Counter

    from davs.data.order import SharedEpoch

    def keys(seed):
        loader, n = make_loader(str(shards / "lrw" / "train-*.tar"), LRWDecode(25, 2, 5, seed, None, True),
                                batch_size=4, train=True, num_samples=18, seed=seed)
        return [k for b in loader for k in b["key"]], n

    a, n = keys(0)
    assert len(a) == 4 * n and n == 5
    assert keys(0)[0] == a
    assert keys(1)[0] != a
    ep = SharedEpoch()
    loader, _ = make_loader(str(shards / "lrw" / "train-*.tar"), LRWDecode(25, 2, 5, 0, ep, True), batch_size=4,
                            train=True, num_samples=18, seed=0, epoch=ep)
    drawn: Counter = Counter()
    for e in range(10):
        ep.set(e)
        drawn.update(k for b in loader for k in b["key"])
    share = sum(drawn.values()) / 18
    assert len(drawn) == 18 and min(drawn.values()) >= 0.5 * share and max(drawn.values()) <= 1.6 * share, drawn


class _CountingDecode(LRWDecode):
    """LRWDecode that counts, in a file (loader workers are processes), the samples it decodes."""

    def __init__(self, tally: Path, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.tally = tally

    def __call__(self, s: dict) -> dict:
        with open(self.tally, "a") as f:
            f.write("x")
        return super().__call__(s)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_epoch_skips_its_consumed_batches_without_decoding_them(shards, tmp_path, workers):
    """Stream.start(epoch, skip) continues on the uninterrupted order; the skipped batches are placeholders,
    so a resume decodes only what it trains on (a loop that decodes to skip decodes 3 x 4 samples more)."""
    from davs.training.streams import Stream

    def stream(tally):
        ep = SharedEpoch()
        loader, n = make_loader(str(shards / "lrw" / "train-*.tar"), _CountingDecode(tally, 25, 2, 5, 0, ep, True),
                                batch_size=4, train=True, num_samples=18, seed=0, epoch=ep, num_workers=workers)
        return Stream(loader, n, ep)

    straight = stream(tmp_path / "straight")
    straight.start(1, 0)
    order = [straight.next()["key"] for _ in range(5)]
    resumed = stream(tmp_path / "resumed")
    resumed.start(1, 3)
    assert [resumed.next()["key"] for _ in range(2)] == order[3:]
    # decoding to skip reads the 3 skipped and the 2 drawn batches (20 samples) at least; without, the 2
    # drawn and what the loader reads ahead (in process one sample, with workers their prefetch: the epoch's
    # 6 - 3 batches at most)
    decoded = len((tmp_path / "resumed").read_text())
    assert decoded < (3 + 2) * 4, f"decoded {decoded} samples: the skipped ones too"
    resumed.start(2, 0)  # the next epoch skips nothing
    first = resumed.next()["key"]
    straight.start(2, 0)
    assert first == straight.next()["key"]


def test_rest_reference_frames_lie_outside_the_word(shards):
    loader, _ = make_loader(str(shards / "lrw" / "train-*.tar"), LRWDecode(25, 2, 5, 0, None, True, rest_ref_prob=1.0),
                            batch_size=4, train=True, num_samples=18, seed=0)
    checked = 0
    for b in loader:
        for mask, ref in zip(b["mask"], b["ref"]):
            if (~mask).any():
                assert not mask[ref], "a rest reference frame inside the word"
                checked += 1
    assert checked > 10


def test_too_few_shards_for_workers_is_an_error(shards):
    with pytest.raises(ValueError, match="shards < workers x ranks"):
        make_loader(str(shards / "msceleb" / "val-*.tar"), decode_celeb, batch_size=2, train=True, num_samples=8,
                    num_workers=4, world_size=2)


def test_mfcc_windows_are_centred_on_frames():
    audio = np.zeros(29 * 640, np.float32)
    i = 14  # put a 1 kHz burst on frame 14's centre
    c = int((i + 0.5) * 640)
    audio[c - 200 : c + 200] = np.sin(np.arange(400) / 16000 * 2 * np.pi * 1000)
    m = mfcc_windows(audio, 29)
    assert m.shape == (29, 20, 12)
    energy = np.abs(m[i]).sum(1)
    assert abs(int(np.argmax(energy)) - 10) <= 2  # the burst sits at the middle of its own window
    assert np.abs(m[i]).sum() > np.abs(m[0]).sum()


def test_align_audio_and_word_mask():
    assert align_audio(np.ones(19456), 29).shape == (18560,)
    a = align_audio(np.ones(100), 29)
    assert a[:100].sum() == 100 and a[100:].sum() == 0
    m = word_mask(29, 0.53)
    assert m.sum() == 2 * 7 + 1 and m[14] and not m[0]


def test_parse_duration(tmp_path):
    f = tmp_path / "X.txt"
    f.write_text("Text:  ABOUT\nConf:  4\n\nABOUT 0.1 0.5 0.0\nDuration: 0.53 seconds\n")
    assert parse_duration(f) == 0.53
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadSample):
        parse_duration(f)


def _celeb_rows(corpus: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv").read_text().splitlines()]


def _celeb_images(out: Path) -> dict[str, list[bytes]]:
    """split -> the JPEG payloads of its shards, in order."""
    got: dict[str, list[bytes]] = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as tf:
            got.setdefault(tar.name.split("-")[0], []).extend(
                tf.extractfile(m).read() for m in tf if m.name.endswith(".jpg"))
    return got


def test_low_shot_tsv_and_recordio_ingest_like_the_aligned_tsv(corpus, tmp_path):
    """The README's other MS-Celeb layouts: the 5-column low-shot ``TrainData_Base.tsv`` (ImageID, FaceData,
    MID, rank, URL) and MS1MV2-style RecordIO give the same identities, splits and faces as the 7-column
    aligned TSV they were written from."""
    rows = _celeb_rows(corpus)
    base = tmp_path / "TrainData_Base.tsv"
    base.write_text("".join(f"img{i}\t{r[6]}\t{r[0]}\t{r[1]}\thttp://x/{i}\n" for i, r in enumerate(rows)))
    mids = sorted({r[0] for r in rows})
    write_recordio(tmp_path / "train.rec", [(mids.index(r[0]), base64.b64decode(r[6])) for r in rows])
    ref = ingest_msceleb(corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv", tmp_path / "ref",
                         tmp_path / "ref.json", CELEB_CFG)
    for name, src in (("base", base), ("rec", tmp_path / "train.rec")):
        got = ingest_msceleb(src, tmp_path / name, tmp_path / f"{name}.json", CELEB_CFG)
        assert got["samples"] == ref["samples"] and got["identities"] == ref["identities"] == len(mids), name
        assert json.loads((tmp_path / name / "summary.json").read_text())["samples"]["train"] > 0
    ref_imgs, base_imgs = _celeb_images(tmp_path / "ref"), _celeb_images(tmp_path / "base")
    assert ref_imgs == base_imgs  # the same faces, cropped the same way, in the same splits


def test_recordio_read_errors_are_listed_and_the_rest_ingested(corpus, tmp_path):
    """A RecordIO record with a bad magic or a non-JPEG payload is a bad input with the reader's words (it
    travels to the workers as the BadSample it is); the other records are ingested."""
    rows = _celeb_rows(corpus)
    mids = sorted({r[0] for r in rows})
    rec = tmp_path / "train.rec"
    write_recordio(rec, [(mids.index(r[0]), base64.b64decode(r[6])) for r in rows] + [(0, b"notajpeg")])
    raw = bytearray(rec.read_bytes())
    offsets = [int(line.split("\t")[1]) for line in rec.with_suffix(".idx").read_text().split("\n") if line]
    raw[offsets[1]:offsets[1] + 4] = b"\0\0\0\0"  # the first face's magic
    rec.write_bytes(bytes(raw))
    cfg = replace(CELEB_CFG, max_bad_fraction=0.5)
    got = ingest_msceleb(rec, tmp_path / "out", tmp_path / "q.json", cfg)
    bad = json.loads((tmp_path / "q.json").read_text())["bad_items"]
    assert sorted(b["reason"].split(": ")[1] for b in bad) == ["bad magic 0x0", "payload is not a JPEG"], bad
    assert sum(got["samples"].values()) > 0


def test_npy_frame_format_stores_the_exact_frames(corpus, shards, tmp_path):
    """``ingest.frame_format: npy`` keeps the reader's frames bit for bit (jpg is lossy); the loader reads both."""
    from .conftest import ingest_val_batch

    out = tmp_path / "npy"
    b, refs = ingest_val_batch(corpus, out, frame_format="npy")
    for i, key in enumerate(b["key"]):
        clip = read_clip(refs[key], LRW_CFG.crop_box, LRW_CFG.image_size)
        np.testing.assert_array_equal(b["frames"][i].numpy(), clip.frames[2:27])
    with tarfile.open(sorted(out.glob("val-*.tar"))[0]) as tf:
        assert any(m.name.endswith(".frames.npy") for m in tf) and not any(m.name.endswith(".jpgs") for m in tf)


def test_synth_writes_only_a_marker_when_real_data_is_set(tmp_path):
    """With both real dataset paths set, the synth stage writes a ``SKIPPED`` marker and no corpus."""
    from pipeline.params import load_params
    from pipeline.stages import synth

    from .conftest import ROOT

    p = load_params(ROOT / "params.yaml")
    p = p.model_copy(update={"data": p.data.model_copy(update={
        "lrw_root": str(tmp_path / "lipread_mp4"), "msceleb_tsv": str(tmp_path / "x.tsv"),
        "corpus_dir": str(tmp_path / "corpus")})})
    assert synth(p) == {}
    assert [f.name for f in (tmp_path / "corpus").iterdir()] == ["SKIPPED"]


def _real_face_clip(root: Path, drift: float) -> ClipRef:
    """An LRW-format clip of a real face (scikit-image's astronaut) that slides ``drift`` px per frame."""
    import cv2
    from skimage import data

    face = cv2.resize(data.astronaut()[20:260, 130:370], (256, 256), interpolation=cv2.INTER_AREA)
    frames = [cv2.warpAffine(face, np.float64([[1, 0, (i - 14) * drift], [0, 1, (i - 14) * drift / 2]]), (256, 256),
                             borderMode=cv2.BORDER_REPLICATE) for i in range(29)]
    d = root / "ABOUT" / "test"
    d.mkdir(parents=True)
    t = np.arange(29 * 640) / 16000
    write_mp4(d / "ABOUT_00001.mp4", np.stack(frames), fps=25, audio=(0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    (d / "ABOUT_00001.txt").write_text("Text:  ABOUT\nConf:  1\n\nDuration: 0.40 seconds\n")
    return ClipRef(str(d / "ABOUT_00001.mp4"), "ABOUT", "test", 1, "")


def test_landmark_alignment_puts_eyes_and_mouth_on_the_template(tmp_path):
    """data.face_align: landmarks (real LRW) aligns every frame on dlib's eyes and mouth: on a real face that
    slides 42 px across the clip, the crops' landmarks sit on the training template and the crops hardly
    move; the fixed crop_box lets the face slide through it."""
    from davs.face.align import TEMPLATE, FaceAligner

    ref = _real_face_clip(tmp_path, drift=1.5)
    size = 128
    aligned = read_clip(ref, LRW_CFG.crop_box, size, face_align="landmarks").frames
    fixed = read_clip(ref, (48, 48, 160), size).frames
    assert aligned.shape == fixed.shape == (29, size, size, 3)
    probe = FaceAligner(size)
    for i in (0, 14, 28):
        pts = probe.points(aligned[i])
        assert pts is not None, i
        err = np.abs(pts - TEMPLATE * size).max()
        assert err < 0.04 * size, (i, pts, TEMPLATE * size)  # within 5 px of 128
    move = lambda x: np.abs(x[0].astype(float) - x[-1].astype(float)).mean()  # noqa: E731 - first vs last crop
    assert move(aligned) < move(fixed) / 3, (move(aligned), move(fixed))
    with pytest.raises(ValueError, match="face_align"):
        read_clip(ref, LRW_CFG.crop_box, size, face_align="eyes")


def test_landmark_alignment_without_a_face_is_a_bad_sample(tmp_path):
    d = tmp_path / "ABOUT" / "test"
    d.mkdir(parents=True)
    write_mp4(d / "ABOUT_00001.mp4", np.full((29, 256, 256, 3), 120, np.uint8), fps=25,
              audio=np.full(29 * 640, 0.1, np.float32))
    (d / "ABOUT_00001.txt").write_text("Duration: 0.40 seconds\n")
    with pytest.raises(BadSample, match="no face found"):
        read_clip(ClipRef(str(d / "ABOUT_00001.mp4"), "ABOUT", "test", 1, ""), LRW_CFG.crop_box, 64,
                  face_align="landmarks")
