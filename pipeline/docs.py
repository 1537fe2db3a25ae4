"""Render every results table into docs/results.md, and the README's one table, from the results files.

    python -m pipeline.docs           # writes docs/results.md and the README block between the markers
    python -m pipeline.docs --check   # exit 1 when either is not what the results files give (a test runs it)

Sources: ``reports/`` (the pipeline's run: metrics.json, seeds.json, environment.json), ``.ci/gates.yaml``,
``experiments/results/*.json`` and ``benchmarks/results/*.json``. Each table says which file it came from, the
machine and the params or commit that file records. Nothing here measures: figures are copied (the ablation's
means over its seeds are the one computation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from davs.files import atomic_write_text
from pipeline import gates

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = Path("docs/results.md")
README = Path("README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
REFRESH_BEGIN, REFRESH_END = "<!-- refresh:begin -->", "<!-- refresh:end -->"
README_KEYS = (  # the README's table: what the model does, over seeds; (key, label, the metric giving its chance)
    ("word_acc/audio_top1", "word accuracy, audio", "word_acc/chance_top1"),
    ("word_acc/video_top1", "word accuracy, video (lip-reading)", None),
    ("leakage/word_from_identity", "word read from identity features", "leakage/word_chance"),
    ("leakage/identity_from_word_msceleb", "MS-Celeb identity read from word features", "leakage/msceleb_identity_chance"),
    ("leakage/identity_from_word_video", "speaker read from video word features", "leakage/speaker_chance"),
    ("leakage/identity_from_word_audio", "speaker read from audio word features", "leakage/speaker_chance"),
    ("judge/lse_c_audio", "LSE-C, audio-driven", None),
    ("judge/lse_c_video", "LSE-C, video-driven", None),
    ("judge/lse_c_real", "LSE-C, real video (the judge's ceiling)", None),
    ("judge/mouth_open_corr_audio", "mouth openness r, audio-driven", None),
    ("judge/mouth_open_corr_video", "mouth openness r, video-driven", None),
    ("quality/audio_psnr_mouth", "mouth PSNR, audio-driven (dB)", None),
    ("quality/copy_ref_psnr_mouth", "mouth PSNR, copying the reference (dB)", None),
    ("quality/audio_ssim", "SSIM, audio-driven", None),
)
HEADLINE = tuple(k for k, _, _ in README_KEYS) + (
    "word_acc/fused_top1", "cross/mouth_is_target_video", "cross/mouth_is_driver_video", "retrieval/r_at_10",
    "identity/cp_acc_msceleb", "judge/offset_zero_audio", "judge/mouth_open_gain_audio", "judge/ref_mouth_leak",
    "quality/video_psnr_mouth")
JUDGED = ("real", "audio", "video", "copy_ref", "shuffled_audio")
JUDGE_COLS = ("lse_c", "lse_d", "offset_zero", "mouth_open_corr", "mouth_open_gain", "mouth_state_mae")
ABLATION_COLS = ("word_acc/audio_top1", "word_acc/video_top1", "leakage/word_from_identity",
                 "leakage/identity_from_word_msceleb", "leakage/identity_from_word_video", "judge/lse_c_audio",
                 "judge/lse_c_video", "judge/mouth_open_corr_audio", "quality/audio_ssim", "quality/audio_psnr_mouth",
                 "time/joint_s", "time/disent_s", "time/gen_s")


def _read(rel: str) -> Any:
    return json.loads((REPO / rel).read_text())


def _sha(rel: str) -> str:
    return hashlib.sha256((REPO / rel).read_bytes()).hexdigest()[:12]


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v).replace("|", "/")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows)])


def machine(env: dict) -> str:
    amx = "AMX, bf16 training" if "amx_tile" in env.get("isa", []) else "no AMX, fp32 training"
    return f"{env.get('cpu')} ({amx}), {env.get('cores')} cores, torch {env.get('packages', {}).get('torch')}"


def _mean_std(values: list[float]) -> str:
    """Mean ± sample std of one row's runs (ablation rows; seeds.json stores its own, see :func:`_spread`)."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return _fmt(mean)
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return f"{_fmt(mean)} ± {_fmt(std)}"


def _spread(m: dict) -> str:
    """A seeds.json metric as recorded: its mean ± std."""
    return f"{_fmt(m['mean'])} ± {_fmt(m['std'])}"


def _provenance() -> str:
    env = _read("reports/environment.json")
    return (f"Pipeline run: `dvc repro` of this commit (`dvc.lock` records its code and params; "
            f"`python -m pipeline.repro_check` holds them to it), on {machine(env)} (`reports/environment.json`), "
            f"params.yaml sha256 `{_sha('params.yaml')}`.")


def seeds_table(keys: tuple[str, ...], labels: dict[str, str] | None = None) -> str:
    s = _read("reports/seeds.json")
    rows = [[f"`{k}`" if labels is None else labels[k], _spread(s["metrics"][k]),
             " / ".join(_fmt(v) for v in s["metrics"][k]["values"])] for k in keys if k in s["metrics"]]
    seeds = ", ".join(map(str, s["seeds"]))
    return _table(["metric", f"mean ± std over seeds {seeds}", "per seed"], rows)


def _top_machine(s: dict) -> dict:
    """The machine whose seeds ``seeds.json``'s top level holds (its entry under ``machines``)."""
    return next((m["environment"] for m in s.get("machines", []) if m["metrics"] == s["metrics"]),
                _read("reports/environment.json"))


def readme_block() -> str:
    s = _read("reports/seeds.json")
    env = _top_machine(s)
    return "\n".join([
        f"Embedded corpus, test split; {len(s['seeds'])} seeds (`python -m pipeline.seeds`), on {machine(env)}. "
        "Generated by `python -m pipeline.docs` from `reports/seeds.json`; every table is in "
        "[docs/results.md](docs/results.md).", "",
        seeds_table(tuple(k for k, _, _ in README_KEYS), readme_labels(s["metrics"]))])


def readme_labels(metrics: dict[str, Any]) -> dict[str, str]:
    """The README table's row labels, each with its chance level as the seeds recorded it."""
    return {k: label if chance not in metrics else f"{label} (chance {_fmt(metrics[chance]['mean'])})"
            for k, label, chance in README_KEYS}


def _seeds_section() -> list[str]:
    s = _read("reports/seeds.json")
    top = _top_machine(s)
    out = ["## Headline metrics over seeds", "",
           f"`reports/seeds.json` (`python -m pipeline.seeds`), the top level: seeds {', '.join(map(str, s['seeds']))} "
           f"on {machine(top)}. {_provenance()}", "", seeds_table(HEADLINE)]
    for m in s.get("machines", []):
        if m["environment"] == top:
            continue
        out += ["", f"### Seeds {', '.join(map(str, m['seeds']))} on {machine(m['environment'])}", "",
                "Recorded by `python -m pipeline.seeds` on that machine (its `environment` in `reports/seeds.json`); "
                "the code may be older than this commit's.", "",
                _table(["metric", "mean ± std", "per seed"],
                       [[f"`{k}`", _spread(m["metrics"][k]),
                         " / ".join(_fmt(v) for v in m["metrics"][k]["values"])] for k in HEADLINE if k in m["metrics"]])]
    return out


def _judges_section() -> list[str]:
    m = _read("reports/metrics.json")
    rows = [[name, *(m.get(f"judge/{c}_{name}", "") for c in JUDGE_COLS)] for name in JUDGED]
    return ["## The judges: generated video against real video, shuffled audio and a copied reference", "",
            f"`reports/metrics.json`, one run (seed {_read_params_seed()}). {_provenance()} The judges "
            "(`models/judges.pt`) are trained apart with their own seed and never train or select a model.", "",
            _table(["frames", *JUDGE_COLS], rows), "",
            f"Reference mouth leak (0: the mouth follows the words, 1: the reference's opening is copied): "
            f"{_fmt(m.get('judge/ref_mouth_leak'))}."]


def _read_params_seed() -> Any:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())["seed"]


def _gates_section() -> list[str]:
    m = _read("reports/metrics.json")
    verdicts = gates.check(m, gates.load())
    rows = [[f"`{v.gate.expression}`", v.gate.bound, v.value, "pass" if v.passed else "FAIL", v.gate.why] for v in verdicts]
    out = ["## Quality gates", "", "`.ci/gates.yaml`, applied to `reports/metrics.json` (the value column) by "
           "`python -m pipeline.repro_check` on a CPU other than the committed results' machine.", "",
           _table(["gated quantity", "bound", "this run", "", "why"], rows)]
    rel = "experiments/results/regressions.json"
    if (REPO / rel).exists():
        r = _read(rel)
        g = gates.load()
        out += ["", f"Regressions the gates catch (`{rel}`, `python -m pipeline.regressions`, one run each on "
                f"{machine(r['environment'])}, commit `{r['commit'][:10]}`):", "",
                _table(["regression", "gates failed", "which"],
                       [[name, len(f := gates.failures(run, g)), "; ".join(f"`{v.gate.expression}`" for v in f)]
                        for name, run in r["runs"].items()])]
    return out


def _ablation_section() -> list[str]:
    rel = "experiments/results/ablation.json"
    if not (REPO / rel).exists():
        return []
    a = _read(rel)
    rows = []
    for name, row in a["rows"].items():
        runs = list(row["runs"].values())
        rows.append([name, len(runs), *(_mean_std([r[k] for r in runs]) if all(k in r for r in runs) else ""
                                        for k in ABLATION_COLS)])
    b = a.get("budget", {})
    return ["## Ablation: the paper's DAVS, ours, and each change switched back", "",
            f"`{rel}` (`python experiments/ablation.py`): every row trains joint, disent and gen on one budget "
            f"(steps {', '.join(f'{k} {v}' for k, v in b.items())}) and is scored as the eval stage scores; mean ± std "
            f"over the seeds shown. Machine: {_recorded(a)}. Each row's params: the overrides in the file.", "",
            _table(["row", "seeds", *(k.split("/", 1)[1] for k in ABLATION_COLS)], rows)]


def _recorded(d: dict) -> str:
    first_row = d["rows"][0] if isinstance(d.get("rows"), list) and d["rows"] else {}
    for where in (d, first_row):
        for k in ("environment", "device", "machine", "cpu"):
            if k in where:
                return machine(where[k]) if isinstance(where[k], dict) else str(where[k])
    return "not recorded in the file"


def _generic(rel: str) -> list[str]:
    """A results file as tables: its scalars, then each list of rows and each mapping of rows."""
    d = _read(rel)
    out = [f"### `{rel}`", "", f"Machine: {_recorded(d)}; commit: {d.get('commit', 'not recorded in the file')}."]
    if isinstance(d.get("note"), str):
        out += ["", d["note"]]
    scalars = [[k, v] for k, v in d.items() if not isinstance(v, (dict, list)) and k not in ("note", "commit")]
    if scalars:
        out += ["", _table(["field", "value"], scalars)]
    groups = {k: v for k, v in d.items() if isinstance(v, dict) and v and not all(isinstance(x, dict) for x in v.values())}
    if groups:  # mappings of scalars side by side (e.g. one per method)
        cols = list(dict.fromkeys(c for x in groups.values() for c in x if not isinstance(x[c], (dict, list))))
        out += ["", _table(["", *cols], [[n, *(x.get(c, "") for c in cols)] for n, x in groups.items()])]
    for k, v in d.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(c for x in v for c in x if not isinstance(x[c], (dict, list))))
            out += ["", f"`{k}`:", "", _table(cols, [[x.get(c, "") for c in cols] for x in v])]
        elif isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            cols = list(dict.fromkeys(c for x in v.values() for c in x if not isinstance(x[c], (dict, list))))
            out += ["", f"`{k}`:", "", _table([k, *cols], [[n, *(x.get(c, "") for c in cols)] for n, x in v.items()])]
    return out


def results_md() -> str:
    parts = ["# Results", "",
             "Generated by `python -m pipeline.docs` from the results files; do not edit (a test fails when this file "
             "is stale). Embedded corpus, test split, unless a table says otherwise.", ""]
    for section in (_seeds_section(), _judges_section(), _gates_section(), _ablation_section()):
        parts += [*section, ""]
    for folder, title in (("experiments/results", "Experiments"), ("benchmarks/results", "Benchmarks")):
        files = sorted(p for p in (REPO / folder).glob("*.json") if p.name not in ("ablation.json", "regressions.json"))
        if files:
            parts += [f"## {title}", "", f"Every file of `{folder}/`, as recorded (one run each unless said).", ""]
            for f in files:
                parts += [*_generic(f"{folder}/{f.name}"), ""]
    return "\n".join(parts).rstrip() + "\n"


def refresh_time() -> str:
    rel = "benchmarks/results/refresh.json"
    if not (REPO / rel).exists():
        return "(not measured yet: `benchmarks/results/refresh.json`)"
    r = _read(rel)
    return (f"about {round(r['total_min'])} minutes on {machine(r['environment'])} (one run, "
            f"`{rel}`)")


def _fill(text: str, begin: str, end: str, body: str, inline: bool = False) -> str:
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"{README}: needs one '{begin}' and one '{end}' after it")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    sep = "" if inline else "\n"
    return f"{head}{begin}{sep}{body}{sep}{end}{tail}"


def readme_text(readme: str) -> str:
    text = _fill(readme, BEGIN, END, readme_block())
    return _fill(text, REFRESH_BEGIN, REFRESH_END, refresh_time(), inline=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.docs", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail when the generated files are stale")
    args = ap.parse_args(argv)
    want = {RESULTS_MD: results_md(), README: readme_text((REPO / README).read_text())}
    stale = [p for p, text in want.items() if not (REPO / p).exists() or (REPO / p).read_text() != text]
    if args.check:
        if stale:
            print(f"stale: {', '.join(map(str, stale))}: run 'python -m pipeline.docs'", file=sys.stderr)
            return 1
        print("generated docs are fresh")
        return 0
    for p in stale:
        atomic_write_text(REPO / p, want[p])
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
