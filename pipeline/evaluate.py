"""The ``eval`` stage: reports/metrics.json, confusion matrices, a frame grid and mp4 samples."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from davs.devices import resolve_device
from davs.files import atomic_output, atomic_write_text, staged_dir
from davs.provenance import environment
from pipeline import paths
from pipeline.params import Params
from pipeline.stages import data_spec, model_config

log = logging.getLogger("davs.eval")

REPORTS = paths.REPORTS


def _round(d: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in d.items()}


def evaluate(p: Params, device: str = "auto") -> dict:
    dev = resolve_device(device)
    m, gen, feats, ck = measure(p, dev, {s: paths.model_file(s) for s in ("joint", "disent", "gen")})
    m = _round(m | data_counts())
    _write_json(REPORTS / "metrics.json", m)
    _write_json(REPORTS / "environment.json", environment())  # what bit-exact reproduction needs alike

    plots = REPORTS / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    words = json.loads((paths.lrw_shards(p) / "vocab.json").read_text())["words"]
    y = feats["label"].astype(int)
    for name, logits in (("audio", feats["la"]), ("video", feats["lv"])):
        with atomic_output(plots / f"confusion_{name}.csv") as tmp:
            pd.DataFrame({"actual": [words[i] for i in y],
                          "predicted": [words[i] for i in logits.argmax(1)]}).to_csv(tmp, index=False)
    _grid(gen, p.eval.grid_rows, REPORTS / "figures" / "grid.png")
    _samples(p, ck["gen"], gen, feats, dev)
    log.info("metrics: %s", json.dumps(m))
    return m


def data_counts() -> dict[str, int]:
    """Bad and total inputs of each ingestion (``reports/data_quality``), as ``data/<dataset>_{bad,total}``."""
    m = {}
    for ds in ("lrw", "msceleb"):
        q = REPORTS / "data_quality" / f"{ds}.json"
        if q.exists():
            qd = json.loads(q.read_text())
            m[f"data/{ds}_bad"] = qd["bad"]
            m[f"data/{ds}_total"] = qd["total"]
    return m


def measure(p: Params, dev: torch.device, models: dict[str, Path]):
    """Every metric of reports/metrics.json but the data counts, for the stages' model files ``models``
    (joint, disent, gen): returns (metrics, the generated test clips, the test features, the loaded files).
    experiments/ablation.py scores its rows with it, as the eval stage scores the pipeline."""
    from davs import evaluation as E
    from davs.checkpoint import load_model
    from davs.data.spec import eval_loaders
    from davs.models import load_nets

    torch.manual_seed(p.seed)
    cfg = model_config(p)
    data = data_spec(p, "joint")
    data = replace(data, batch_size=p.eval.batch_size, id_batch_size=p.eval.batch_size)
    enc = cfg.ENCODER_FIELDS
    ck = {s: load_model(models[s], cfg, dev, None if s == "gen" else enc) for s in ("joint", "disent", "gen")}
    # disent's networks, then what gen trained: G, and (end to end) the encoders and Cw it fine-tuned
    nets = load_nets(ck["disent"], None, dev) | load_nets(ck["gen"], tuple(k for k in ck["gen"]["nets"]
                                                                          if k not in ("D_temporal", "D_domain")), dev)
    joint = load_nets(ck["joint"], None, dev)
    test = eval_loaders(data, cfg.window, "test", ("lrw", "celeb"))
    val = eval_loaders(data, cfg.window, "val", ("lrw", "celeb"))
    words = json.loads((paths.lrw_shards(p) / "vocab.json").read_text())["words"]

    log.info("eval: features")
    feats = E.lrw_features(nets, test["lrw"](), dev)
    feats_joint = E.lrw_features(joint, test["lrw"](), dev)
    celeb = E.celeb_features(nets, test["celeb"](), dev)
    celeb_joint = E.celeb_features(joint, test["celeb"](), dev)
    y = feats["label"].astype(int)
    m: dict[str, float | int | None] = {"data/test_clips": len(y), "data/test_faces": len(celeb["label"]),
                                        "data/words": len(words)}
    for name, logits in (("audio", feats["la"]), ("video", feats["lv"]), ("fused", feats["la"] + feats["lv"])):
        m[f"word_acc/{name}_top1"] = E.topk(logits, y, 1)
        m[f"word_acc/{name}_top5"] = E.topk(logits, y, 5)
    m["word_acc/chance_top1"] = 1.0 / len(words)
    m["word_acc/chance_top5"] = min(1.0, 5.0 / len(words))
    m["word_acc/majority"] = E.majority_rate(y)
    m |= {f"retrieval/{k}": v for k, v in E.retrieval(feats["a"], feats["v"]).items()}

    log.info("eval: leakage probes (fitted on val, scored on test)")
    after = E.leakage(E.lrw_features(nets, val["lrw"](), dev), feats, E.celeb_features(nets, val["celeb"](), dev), celeb,
                      p.eval.probe_c)
    before = E.leakage(E.lrw_features(joint, val["lrw"](), dev), feats_joint,
                       E.celeb_features(joint, val["celeb"](), dev), celeb_joint, p.eval.probe_c)
    for k, v in after.items():
        m[f"leakage/{k}"] = v
        m[f"leakage/{k}_joint"] = before[k]
    m["leakage/word_chance"] = E.majority_rate(y)
    spk = feats["speaker"][feats["speaker"] >= 0]
    if len(spk):
        m["leakage/speaker_chance"] = 1.0 / len(np.unique(spk))
    m["leakage/msceleb_identity_chance"] = E.majority_rate(celeb["label"])
    m["identity/cp_acc_msceleb"] = E.topk(celeb["logits"], celeb["label"].astype(int), 1)
    m["identity/chance"] = E.majority_rate(celeb["label"])

    gen_metrics, gen = evaluate_generator(p, nets, test["lrw"], dev)
    m |= gen_metrics
    if len(spk):  # the corpus names its speakers: whose mouth does a cross-driven face get?
        from davs.cross_speaker import cross_speaker

        log.info("eval: cross-speaker driving (a mouth probe fitted on real val mouths)")
        m |= {f"cross/{k}": v for k, v in
              cross_speaker(nets, test["lrw"], val["lrw"], tuple(p.data.mouth_box), dev, p.eval.probe_c).items()}
    return m, gen, feats, ck


def evaluate_generator(p: Params, nets: dict, test_lrw, dev: torch.device):
    """Regenerate every test clip (audio- and video-driven) and score it: SSIM / PSNR against the ground
    truth, the embedding sync distance, and the judges (trained apart, never seen by training).
    Returns (metrics, the generated clips)."""
    from davs import evaluation as E
    from davs.judges.data import load_clips
    from davs.judges.scores import judge_videos, reference_leak
    from davs.judges.train import load_judges

    log.info("eval: generation")
    gen = E.generate_test(nets, test_lrw(), dev)
    box = tuple(p.data.mouth_box)
    t = gen.gt.shape[1]
    gt_at = lambda x, i: x[np.arange(len(x)), i]  # noqa: E731 - (N, T, ...) -> (N, ...) at frame i[n]
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - (N, T, H, W, 3) -> (N*T, H, W, 3)
    copy = np.repeat(gen.ref[:, None], t, 1)
    m: dict[str, float] = {}
    for name, pred in (("audio", gen.audio), ("video", gen.video), ("copy_ref", copy)):
        m |= {f"quality/{name}_{k}": v for k, v in E.image_quality(flat(pred[:, 1:]), flat(gen.gt[:, 1:]), box).items()}
    m |= {f"sync/{k}": v for k, v in gen.sync.items()}

    log.info("eval: judges (trained apart, never seen by training)")
    judges = load_judges(paths.model_file("judges"), dev)
    clips = load_clips(paths.lrw_shards(p), "test", p.data.image_size, box, 0, paths.mouth_states(p))
    if clips.keys != gen.keys:
        raise RuntimeError("judge clips and generated clips are not the same test clips in the same order")
    videos = {"real": gen.gt, "audio": gen.audio, "video": gen.video, "copy_ref": copy}
    m |= {f"judge/{k}": v for k, v in judge_videos(judges, videos, clips.mfcc, p.data.frame_offset, clips.states).items()}
    if clips.states is not None:  # does the reference's own mouth leak through? (corpus only: needs mouth states)
        t0 = p.data.frame_offset
        widest = clips.states[:, t0 : t0 + t, 0].argmax(1).tolist()  # per clip: its most open frame
        idx = dict(zip(clips.keys, widest, strict=True))
        from_open = E.generate_from(nets, test_lrw(), dev, idx)
        open_ref = gt_at(gen.gt, widest)
        m |= {f"judge/{k}": v for k, v in reference_leak(judges, gen.audio, from_open, gen.ref, open_ref).items()}
    return m, gen


def _write_json(path: Path, d: dict) -> None:
    atomic_write_text(path, json.dumps(d, indent=2) + "\n")


def _grid(gen, rows: int, out: Path) -> None:
    """Rows of: reference | ground truth | audio-driven | video-driven (5 frames each)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n, t, h, w, _ = gen.gt.shape
    cols = np.linspace(1, t - 1, 5).astype(int)
    label_h = 14
    lines = []
    for i in np.linspace(0, n - 1, min(rows, n)).astype(int):
        blocks = [gen.ref[i]] + [np.concatenate([x[i, c] for c in cols], 1) for x in (gen.gt, gen.audio, gen.video)]
        lines.append(np.concatenate([np.concatenate([b, np.full((h, 4, 3), 255, np.uint8)], 1) for b in blocks], 1))
    grid = np.concatenate(lines, 0)
    img = Image.new("RGB", (grid.shape[1], grid.shape[0] + label_h), "white")
    img.paste(Image.fromarray(grid), (0, label_h))
    d = ImageDraw.Draw(img)
    x = 0
    for title, width in (("ref", w), ("ground truth", 5 * w), ("audio-driven", 5 * w), ("video-driven", 5 * w)):
        d.text((x + 2, 1), title, fill="black")
        x += width + 4
    scale = max(1, 256 // h)
    with atomic_output(out) as tmp:
        img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(tmp, format="PNG")


def _samples(p: Params, model: dict, gen, feats, dev) -> None:
    """Cross-identity mp4s: the target's face says the driver's audio / mimics the driver's lips."""
    with staged_dir(REPORTS / "samples") as out:  # a killed run leaves the previous samples, whole
        _write_samples(p, model, gen, feats, dev, out)


def _write_samples(p: Params, model: dict, gen, feats, dev, out: Path) -> None:
    """Made as ``davs generate`` makes them (:class:`davs.inference.Talker`, the driver's whole clip as
    context), on the test clips' aligned crops."""
    from davs.data.features import align_audio
    from davs.data.lrw import clip_path
    from davs.inference import Talker
    from davs.media import read_audio, write_mp4

    n = len(gen.keys)
    if not p.eval.num_samples or n < 2:
        return
    talker = Talker.from_model(model, dev)
    root = paths.lrw_root(p)
    off, t = p.data.frame_offset, gen.gt.shape[1]
    spk, lab = feats["speaker"], feats["label"]
    for s in range(min(p.eval.num_samples, n)):
        i = (s * 7) % n
        others = [(i + d) % n for d in range(1, n)]  # another speaker saying another word, if there is one
        j = next((k for k in others if lab[k] != lab[i] and (spk[k] != spk[i] or spk[i] < 0)), others[0])
        audio = align_audio(read_audio(root / clip_path(gen.keys[j])), 29)
        a = talker.audio_words(audio, len(audio) // 640)[off : off + t]  # (T, D): the clip's frames, in context
        v = talker.video_words(gen.gt[j])  # (T, D)
        fa, fv = talker.animate(gen.ref[i], a), talker.animate(gen.ref[i], v)
        panel = np.concatenate([np.repeat(gen.ref[i][None], t, 0), gen.gt[j], fa, fv], 2)  # (T, H, 4W, 3)
        scale = max(1, 128 // panel.shape[1])
        panel = panel.repeat(scale, 1).repeat(scale, 2)
        seg = audio[off * 640 : (off + t) * 640]
        write_mp4(out / f"sample_{s:02d}_{gen.keys[i]}_says_{gen.keys[j]}.mp4", panel, fps=25, audio=seg)
