"""What a result depends on: dataset listings for DVC, and the params gate that stops DVC before it
deletes anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from davs.data.sources import SourceError, write_listing
from davs.provenance import code_hash, file_hash

from .conftest import ROOT


def test_listing_sees_deletions_edits_and_nothing_else(corpus, tmp_path):
    root = tmp_path / "lipread_mp4"
    shutil.copytree(corpus / "lipread_mp4", root)
    out = tmp_path / "lrw.tsv"
    info = write_listing(root, out)
    first = out.read_text()
    lines = first.splitlines()[1:]
    assert info["files"] == len(lines) > 10 and lines == sorted(lines, key=lambda x: x.split("\t")[0].split("/"))
    assert all(len(x.split("\t")) == 3 for x in lines)
    write_listing(root, out)
    assert out.read_text() == first  # nothing changed: same bytes, so DVC reruns nothing
    victim = sorted(root.glob("ABOUT/train/*.mp4"))[0]
    victim.unlink()
    write_listing(root, out)
    assert "ABOUT/train/" + victim.name + "\t" not in out.read_text() and out.read_text() != first
    second = out.read_text()
    clip = sorted(root.glob("MONEY/test/*.mp4"))[0]
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))  # edited in place
    write_listing(root, out)
    assert out.read_text() != second
    tsv = corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv"
    assert write_listing(tsv, tmp_path / "celeb.tsv")["files"] == 1
    with pytest.raises(SourceError, match="does not exist"):
        write_listing(tmp_path / "nope", tmp_path / "x.tsv")
    assert not list(tmp_path.glob(".x.tsv*"))


def test_params_gate_marker_does_not_depend_on_params_and_bad_params_write_nothing(tmp_path, venv_env):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    outs = []
    for i, l1 in enumerate((1.0, 10.0)):
        raw["gen"]["l1_weight"] = l1
        p = tmp_path / f"p{i}.yaml"
        p.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"ok{i}.json"
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "--params", str(p), "check-params", "--out",
                            str(out)], cwd=ROOT, env=venv_env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_text().replace(str(p), "P"))
    assert outs[0] == outs[1]
    raw["gen"]["l1_weight"] = "abc"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "--params", str(bad), "check-params", "--out",
                        str(tmp_path / "okbad.json")], cwd=ROOT, env=venv_env, capture_output=True, text=True)
    assert r.returncode == 1 and "gen.l1_weight" in r.stderr and not (tmp_path / "okbad.json").exists()


def test_every_stage_waits_for_the_params_gate():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["check_params"]["params"] == [{"params.yaml": None}]
    for name, st in stages.items():
        if name != "check_params":
            assert "reports/params_check.json" in st["deps"], name


def test_code_and_file_hashes_follow_content(tmp_path):
    a = tmp_path / "m.pt"
    a.write_bytes(b"x" * 3_000_000)
    h = file_hash(a)
    os.utime(a, ns=(0, 0))
    assert file_hash(a) == h and file_hash(None) == ""
    a.write_bytes(b"x" * 2_999_999 + b"y")
    assert file_hash(a) != h
    assert code_hash(["davs.training.runners"]) == code_hash(["davs.training.runners"])
    assert code_hash(["davs.training.runners"]) != code_hash(["davs.judges.train"])


def test_cli_dispatch_covers_every_command():
    from pipeline.cli import COMMANDS, _entry

    for spec in COMMANDS.values():
        assert callable(_entry(spec))
    assert Path(ROOT / "pipeline" / "cli.py").read_text().count("import pipeline.stages") == 0


def test_seed_summary_reads_dvc_exp_show_and_reports_mean_and_sample_std():
    from pipeline.seeds import find_metrics, summarise, table

    show = [{"rev": "workspace", "data": {"metrics": {"reports/metrics.json": {"data": {"a": 9.0}}}}},
            {"rev": "abc", "experiments": [{"revs": [
                {"name": "seed-1", "data": {"metrics": {"reports/metrics.json": {"data": {"a": 1.0, "b": 2}}}}}]}]}]
    assert find_metrics(show, "seed-1") == {"a": 1.0, "b": 2}
    assert find_metrics(show, "seed-7") is None
    s = summarise({0: {"a": 1.0, "b": 5}, 1: {"a": 3.0}, 2: {"a": 2.0}})
    assert s["seeds"] == [0, 1, 2] and set(s["metrics"]) == {"a"}  # only metrics every seed has
    assert s["metrics"]["a"] == {"mean": 2.0, "std": 1.0, "values": [1.0, 3.0, 2.0]}
    assert "| `a` | 2.000 ± 1.000 | 1.000 / 3.000 / 2.000 |" in table(s, ("a",))


def test_dvclive_logs_hold_no_timings(tmp_path, monkeypatch):
    """dvclive/<stage> is a DVC output: timings in it would change dvc.lock on every run."""
    from pipeline.stages import LiveCallback

    monkeypatch.chdir(tmp_path)
    cb = LiveCallback("joint")
    cb(20, {"train/loss/word_video": 1.5, "perf/step_s": 0.31, "perf/data_s": 0.01})
    cb(40, {"train/loss/word_video": 1.2, "perf/step_s": 0.29, "perf/data_s": 0.02})
    cb.close()
    files = [p for p in (tmp_path / "dvclive" / "joint").rglob("*") if p.is_file()]
    assert any("word_video" in str(p) for p in files)
    assert not any("perf" in str(p) or "perf" in p.read_text() for p in files)


def _lock(code_md5="a", out_md5="m", params=None):
    return {"stages": {
        "train": {"deps": [{"path": "davs/x.py", "md5": code_md5}, {"path": "data/shards", "md5": "s"}],
                  "params": {"params.yaml": params or {"lr": 1}}, "outs": [{"path": "models/m.pt", "md5": out_md5}]},
        "ingest": {"deps": [{"path": "davs/i.py", "md5": "i"}], "outs": [{"path": "data/shards", "md5": "s"}]},
    }}


def test_repro_check_tells_stale_code_from_machine_drift():
    from pipeline import repro_check as R

    assert R.code_and_params(_lock(), _lock(out_md5="other")) == []  # outputs may drift, code may not
    assert R.code_and_params(_lock(), _lock(code_md5="b")) == ["stage train: davs/x.py differs from the committed lock"]
    assert R.code_and_params(_lock(), _lock(params={"lr": 2})) == ["stage train: params differ from the committed lock"]
    assert R.output_hashes(_lock(), _lock(out_md5="other")) == ["output models/m.pt differs"]
    assert R.output_hashes(_lock(), _lock()) == []


def test_seed_study_passes_its_overrides_to_every_seed_and_records_them(tmp_path, monkeypatch):
    """--set runs every seed as an experiment under the overrides (never the workspace's run, which has none)
    and writes its own file naming them; without --out it refuses (reports/seeds.json is the defaults')."""
    import pytest

    from pipeline import seeds

    calls = []

    def fake_dvc(args, capture=False):
        calls.append(args)
        if args[:2] == ["exp", "show"]:
            return json.dumps([{"name": f"seed-{s}", "data": {"metrics": {"reports/metrics.json": {
                "data": {"acc": 0.9 + s / 100}}}}} for s in (0, 1)])
        return ""

    monkeypatch.setattr(seeds, "_dvc", fake_dvc)
    monkeypatch.setattr(seeds, "_workspace_run", lambda: pytest.fail("a study must not reuse the workspace run"))
    out = tmp_path / "study.json"
    assert seeds.main(["--seeds", "0", "1", "--set", "gen.gan_weight=0.03", "--set", "model.gen_context=2",
                       "--out", str(out)]) == 0
    runs = [c for c in calls if c[:2] == ["exp", "run"]]
    assert len(runs) == 2 and all(c[-4:] == ["-S", "gen.gan_weight=0.03", "-S", "model.gen_context=2"] for c in runs)
    rec = json.loads(out.read_text())
    assert rec["overrides"] == {"gen.gan_weight": 0.03, "model.gen_context": 2}
    assert rec["metrics"]["acc"]["values"] == [0.9, 0.91] and rec["environment"]["cpu"]
    with pytest.raises(SystemExit):
        seeds.main(["--set", "gen.gan_weight=0.03"])
    with pytest.raises(SystemExit):
        seeds.main(["--set", "gen.gan_weight", "--out", str(out)])


def test_seeds_json_keeps_one_entry_per_machine():
    """A seed sweep on another machine is recorded beside the committed machine's; the top level stays the
    committed machine's (the generated headline table); a rerun replaces its own machine's entry."""
    from pipeline.seeds import merge_machines, summarise

    amx, epyc = {"cpu": "Xeon", "isa": ["amx_tile"]}, {"cpu": "EPYC", "isa": ["avx512f"]}
    legacy = summarise({0: {"acc": 0.99, "fixed": 1.0}, 1: {"acc": 0.99, "fixed": 1.0}, 2: {"acc": 0.98, "fixed": 1.0}})
    # a file from before per-machine entries: its spread becomes the committed machine's entry
    both = merge_machines(legacy, summarise({0: {"acc": 0.94, "fixed": 1.0}, 1: {"acc": 0.95, "fixed": 1.0}}),
                          here=epyc, committed_env=amx)
    assert [m["environment"] for m in both["machines"]] == [amx, epyc]
    assert both["seeds"] == [0, 1, 2] and both["metrics"] == legacy["metrics"]  # the committed machine's, kept
    again = merge_machines(both, summarise({0: {"acc": 0.97}, 1: {"acc": 0.96}}), here=amx, committed_env=amx)
    assert len(again["machines"]) == 2 and again["seeds"] == [0, 1]
    assert again["machines"][-1]["environment"] == amx and again["metrics"]["acc"]["values"] == [0.97, 0.96]


def test_environment_names_cpu_cores_and_libraries():
    from davs.provenance import environment

    env = environment()
    assert env["cores"] >= 1 and env["packages"]["torch"] and env["packages"]["numpy"]
    assert json.loads(json.dumps(env)) == env  # what reports/environment.json holds
