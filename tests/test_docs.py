"""Generated docs (pipeline/docs.py): fresh on the commit, stale when a results file changes, a short README."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline import docs

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_fresh():
    """docs/results.md and the README's table are what `python -m pipeline.docs` renders from the results."""
    assert docs.main(["--check"]) == 0, "run 'python -m pipeline.docs' and commit docs/results.md and README.md"


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    for rel in ("README.md", "params.yaml", "reports", "docs", "benchmarks/results", "experiments/results"):
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / rel)
        elif src.exists():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp_path / rel)
    monkeypatch.setattr(docs, "REPO", tmp_path)
    return tmp_path


def test_a_changed_result_makes_the_docs_stale_until_rendered(repo_copy, capsys):
    seeds = json.loads((repo_copy / "reports" / "seeds.json").read_text())
    seeds["metrics"]["word_acc/audio_top1"]["values"][0] = 0.5
    (repo_copy / "reports" / "seeds.json").write_text(json.dumps(seeds))
    assert docs.main(["--check"]) == 1
    assert "README.md" in capsys.readouterr().err
    assert docs.main([]) == 0
    assert docs.main(["--check"]) == 0
    readme = (repo_copy / "README.md").read_text()
    rest = seeds["metrics"]["word_acc/audio_top1"]["values"][1:]
    assert " / ".join(["0.500", *(f"{v:.3f}" for v in rest)]) in readme  # the README block shows the new values


def test_a_new_benchmark_file_appears_in_the_results(repo_copy):
    (repo_copy / "benchmarks" / "results" / "toy.json").write_text(json.dumps(
        {"device": "cpu", "speedup": 3.25, "rows": [{"n": 1, "s": 0.5}, {"n": 2, "s": 0.25}]}))
    assert docs.main(["--check"]) == 1
    docs.main([])
    text = (repo_copy / "docs" / "results.md").read_text()
    assert "benchmarks/results/toy.json" in text and "| speedup | 3.250 |" in text and "| 2 | 0.250 |" in text


def test_readme_is_a_short_manual_with_the_generated_table():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert readme.count(docs.BEGIN) == 1 and readme.count(docs.END) == 1
    for needed in ("arxiv.org/abs/1807.07860", "Hangz-nju-cuhk/Talking-Face-Generation-DAVS", "@inproceedings",
                   "bash scripts/main.sh", "bash scripts/test.sh", "bash scripts/refresh.sh"):
        assert needed in readme


def test_no_hand_typed_figures_outside_the_generated_block():
    """Results figures (three-decimal values, dB, percentages) appear in the README only inside the block."""
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(docs.BEGIN)
    outside = head + rest.split(docs.END)[1]
    typed = re.findall(r"\b0\.\d{3}\b|\b\d+(?:\.\d+)? ?dB\b|\b\d+(?:\.\d+)? ?%", outside)
    assert not typed, f"typed figures in README.md: {typed}"


def test_readme_labels_take_each_chance_level_from_the_recorded_metrics():
    from pipeline.docs import readme_labels

    labels = readme_labels({"leakage/speaker_chance": {"mean": 0.08333, "std": 0.0, "values": [0.08333]}})
    assert labels["leakage/identity_from_word_video"] == "speaker read from video word features (chance 0.083)"
    assert labels["word_acc/audio_top1"] == "word accuracy, audio"  # its chance not recorded: no figure typed
