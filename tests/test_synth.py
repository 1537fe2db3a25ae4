"""The embedded corpus keeps the promises of the real LRW and MS-Celeb formats."""

import base64
import csv
import hashlib
import io
import struct

import decord
import numpy as np
from PIL import Image

from davs.data.lrw import parse_duration
from davs.synth.corpus import ClipJob, render_clip
from davs.synth.espeak import Voice, synthesize
from davs.synth.face import CANVAS, Identity, mouth_centre

from .conftest import TINY


def _clips(corpus):
    return sorted((corpus / "lipread_mp4").rglob("*.mp4"))


def test_lrw_layout_and_counts(corpus):
    clips = _clips(corpus)
    assert len(clips) == 3 * (6 + 2 + 3)
    for c in clips:
        word, split = c.parts[-3], c.parts[-2]
        assert word == word.upper() and split in ("train", "val", "test")
        assert c.stem.startswith(word + "_") and len(c.stem.split("_")[-1]) == 5
        assert c.with_suffix(".txt").exists()


def test_clip_video_and_audio_match_the_format(corpus):
    for c in _clips(corpus)[:6]:
        vr = decord.VideoReader(str(c))
        assert len(vr) == 29
        assert abs(vr.get_avg_fps() - 25) < 1e-6
        assert vr[0].shape == (256, 256, 3)
        ar = decord.AudioReader(str(c), sample_rate=16000, mono=True)
        audio = ar[:].asnumpy()
        assert audio.shape[0] == 1
        # 29 frames x 640 samples, plus at most one AAC frame of encoder padding
        assert 18560 <= audio.shape[1] <= 18560 + 2048
        assert np.abs(audio).max() > 0.1  # speech, not silence


def test_txt_has_five_lines_ending_with_duration(corpus):
    for c in _clips(corpus):
        lines = c.with_suffix(".txt").read_text().splitlines()
        assert len(lines) == 5
        assert lines[0] == f"Text:  {c.parts[-3]}"
        assert lines[-1].startswith("Duration: ") and lines[-1].endswith(" seconds")
        d = parse_duration(c.with_suffix(".txt"))
        assert 0.1 < d < 1.16


def test_word_is_centred_in_time(corpus):
    c = _clips(corpus)[0]
    audio = decord.AudioReader(str(c), sample_rate=16000, mono=True)[:].asnumpy()[0][:18560]
    env = np.convolve(np.abs(audio), np.ones(320) / 320, "same")
    active = np.where(env > 0.2 * env.max())[0]
    centre = (active[0] + active[-1]) / 2 / 16000
    assert abs(centre - 0.58) < 0.12


def test_speakers_csv_covers_every_clip_and_test_only_speakers(corpus):
    with open(corpus / "lipread_mp4" / "speakers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(_clips(corpus))
    by_split = {}
    for r in rows:
        by_split.setdefault(r["clip"].split("/")[1], set()).add(r["speaker"])
    test_only = by_split["test"] - by_split["train"]
    assert test_only, "some identities must appear only in test"
    assert by_split["val"] <= by_split["train"]


def test_msceleb_tsv_columns_rectangles_and_jpegs(corpus):
    lines = (corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv").read_text().splitlines()
    assert len(lines) == TINY.msceleb_identities * TINY.msceleb_images
    mids = set()
    for line in lines:
        cols = line.split("\t")
        assert len(cols) == 7
        mids.add(cols[0])
        assert cols[0].startswith("m.0")
        rect = struct.unpack("<4f", base64.b64decode(cols[5], validate=True))
        assert 0 <= rect[0] < rect[2] <= 1 and 0 <= rect[1] < rect[3] <= 1
        img = Image.open(io.BytesIO(base64.b64decode(cols[6], validate=True)))
        assert img.format == "JPEG" and max(img.size) <= 300
    assert len(mids) == TINY.msceleb_identities


def _mouth_track(path, idt) -> np.ndarray:
    """(T,) mean brightness of the mouth region of each decoded frame: low when the mouth is open (dark)."""
    frames = decord.VideoReader(str(path)).get_batch(list(range(29))).asnumpy().astype(float)  # (T, H, W, 3)
    mx, my = (int(v) for v in mouth_centre(idt))
    return frames[:, my - 16 : my + 16, mx - 24 : mx + 24].mean(axis=(1, 2, 3))


def test_lips_move_with_the_word_and_differ_between_words(tmp_path):
    """Same speaker and scene noise, two words: the mouth region's darkness follows different paths."""
    tracks = {}
    for word in ("ABOUT", "MONEY", "SCHOOL"):
        job = ClipJob(word, "train", 1, 0, str(tmp_path / f"{word}.mp4"))
        meta = render_clip(job, TINY)
        region = _mouth_track(job.path, Identity.make(0, TINY.seed))
        tracks[word] = region
        openness = meta["mouth"][:, 0]  # what the renderer drew, from the phoneme timings
        assert np.corrcoef(region, openness)[0, 1] < -0.7, f"{word}: the pixels do not follow the mouth states"
        assert region.max() - region.min() > 8, f"{word}: the mouth hardly moves"
        assert np.argmin(region) not in (0, 28), f"{word}: the mouth should open mid-clip, while the word is spoken"
    a, b, c = (tracks[w] - tracks[w].mean() for w in ("ABOUT", "MONEY", "SCHOOL"))
    for x, y in ((a, b), (a, c), (b, c)):
        assert np.abs(x - y).mean() > 2


def test_generation_is_deterministic(tmp_path):
    job = ClipJob("ABOUT", "val", 2, 1, str(tmp_path / "a" / "ABOUT_00002.mp4"))
    job2 = ClipJob("ABOUT", "val", 2, 1, str(tmp_path / "b" / "ABOUT_00002.mp4"))
    render_clip(job, TINY)
    render_clip(job2, TINY)
    h = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: E731
    assert h(job.path) == h(job2.path)


def test_every_corpus_voice_is_reproducible_across_seconds():
    """eSpeak NG seeds its noise (the breath of f2/f3) from time(): two runs a second apart must still match."""
    import time

    from davs.synth.corpus import _VARIANTS, speaker_voice

    voices = [speaker_voice(i, 0) for i in range(len(_VARIANTS))]
    first = [synthesize("absolutely", v).samples for v in voices]
    time.sleep(1.05)  # next wall-clock second: a time-seeded generator would now differ
    for v, a in zip(voices, first):
        assert np.array_equal(a, synthesize("absolutely", v).samples), v


def test_espeak_phonemes_and_voices():
    a = synthesize("money", Voice(variant="f2", pitch=70))
    b = synthesize("money", Voice(variant="m3", pitch=30))
    assert a.sample_rate == 22050 and len(a.samples) > 2000
    names = [p for p, _ in a.phonemes]
    assert "m" in names and any(p.startswith("_") for p in names)
    assert all(t1 <= t2 for (_, t1), (_, t2) in zip(a.phonemes, a.phonemes[1:]))
    assert not np.array_equal(a.samples[:2000], b.samples[:2000])


def test_identities_are_distinct_and_stable():
    a, b = Identity.make(1, 0), Identity.make(2, 0)
    assert a == Identity.make(1, 0)
    assert a != b
    assert 0 < mouth_centre(a)[1] < CANVAS


def test_corpus_is_identical_across_runs_with_worker_processes(tmp_path):
    """Same seed, same bytes, whichever process renders which clip: two worker processes or this one."""
    from dataclasses import replace

    from davs.resources import lrw_words
    from davs.synth.corpus import generate

    spec = replace(TINY, train_per_word=2, val_per_word=1, test_per_word=1, msceleb_identities=2, msceleb_images=2)
    digests = []
    for run, workers in (("a", 2), ("b", 1)):
        generate(tmp_path / run, lrw_words(), replace(spec, workers=workers))
        files = sorted(p for p in (tmp_path / run).rglob("*") if p.is_file() and p.name != "corpus.json")
        digests.append({str(p.relative_to(tmp_path / run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    assert len(digests[0]) > 10 and digests[0] == digests[1]
