"""The orchestration for real, in a temporary clone: dvc repro, a no-op repro, dvc exp run -S, and the
Prefect deployment davs/full against a local server. Tiny params keep it to a few minutes on 2 cores."""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.flow import dvc_stages

from .conftest import ROOT, TINY_PARAMS, _set

pytestmark = pytest.mark.slow

def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh clone-like copy of the tracked files with tiny params, committed."""
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    raw = yaml.safe_load((dst / "params.yaml").read_text())
    for k, v in TINY_PARAMS.items():
        _set(raw, k, v)
    (dst / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dst, check=True)
    return dst


def _named(node, prefix: str) -> list[dict]:
    """The experiments of ``dvc exp show --json`` whose name starts with ``prefix`` (the nesting varies)."""
    if isinstance(node, dict):
        here = [node] if str(node.get("name", "")).startswith(prefix) and isinstance(node.get("data"), dict) else []
        return here + [e for v in node.values() for e in _named(v, prefix)]
    if isinstance(node, list):
        return [e for v in node for e in _named(v, prefix)]
    return []


def _ran(out: str) -> list[str]:
    return [s for s in dvc_stages(ROOT / "dvc.yaml") if f"Running stage '{s}'" in out]


def test_dvc_repro_noop_and_experiment(repo, venv_env):
    r = run(["dvc", "repro"], repo, venv_env, timeout=900)
    assert _ran(r.stdout) == dvc_stages(ROOT / "dvc.yaml")
    m = json.loads((repo / "reports" / "metrics.json").read_text())
    for key in ("word_acc/audio_top1", "word_acc/video_top1", "leakage/word_from_identity", "quality/audio_ssim",
                "quality/copy_ref_psnr", "retrieval/r_at_1", "sync/dist_generated", "identity/cp_acc_msceleb",
                "judge/lse_c_real", "judge/lse_c_audio", "judge/offset_audio", "judge/mouth_open_corr_audio",
                "judge/mouth_open_corr_copy_ref", "judge/ref_mouth_leak"):
        assert key in m, key
    assert (repo / "reports" / "figures" / "grid.png").stat().st_size > 1000
    assert list((repo / "reports" / "samples").glob("*.mp4"))
    assert json.loads((repo / "reports" / "data_quality" / "lrw.json").read_text())["bad"] == 0

    r = run(["dvc", "repro"], repo, venv_env)
    assert _ran(r.stdout) == ["sources"], "a second repro must only relist the (unset) real datasets"

    r = run(["dvc", "exp", "run", "-S", "gen.l1_weight=10"], repo, venv_env, timeout=900)
    assert _ran(r.stdout) == ["check_params", "sources", "gen", "lips", "eval"]
    show = run(["dvc", "exp", "show", "--json"], repo, venv_env).stdout
    assert "l1_weight" in show and "word_acc/audio_top1" in show
    r = run(["dvc", "plots", "show", "--json"], repo, venv_env)
    assert "confusion" in r.stdout


def _md5s(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_bad_params_cost_no_output(repo, venv_env):
    """DVC deletes a stage's outputs before running it; the params gate fails first, so nothing is lost."""
    params = (repo / "params.yaml").read_text()
    before = {d: _md5s(repo / d) for d in ("models", "dvclive", "reports")}
    assert before["models"] and before["dvclive"]
    try:
        r = subprocess.run(["dvc", "exp", "run", "-S", "gen.l1_weight=abc"], cwd=repo, env=venv_env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode != 0
        assert "gen.l1_weight" in r.stdout + r.stderr
        assert "Running stage 'gen'" not in r.stdout
        assert {d: _md5s(repo / d) for d in before} == before
    finally:
        (repo / "params.yaml").write_text(params)


def _group_alive(pgid: int) -> list[int]:
    import psutil

    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return alive


def test_sigterm_during_every_stage(repo, venv_env, tmp_path):
    """Each stage's command, SIGTERMed once it has started working, exits (143; 0 or killed by the signal if it finished first),
    leaves no process of its group behind and no temporary or staging file, and every output is still what
    dvc.lock records (a killed stage publishes nothing partial). The one exception is by design: the
    training stages' live metrics (dvclive/<stage>) are written as training goes."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        log = tmp_path / f"{name}.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(shlex.split(st["cmd"]), cwd=repo, env=venv_env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and " INFO " not in log.read_text():
            time.sleep(0.1)
        time.sleep(1.0)  # into the stage's work
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        # 143: the CLI's handler unwound the work; 0: the work ended before the signal. -15: the signal landed
        # so late in interpreter shutdown that CPython had already put back the default handler (a shell shows
        # that as 143 too); the work was over, so no error was logged, and the checks below hold as for 143.
        text = log.read_text()
        late = rc == -signal.SIGTERM and " done: " in text and "Traceback" not in text and " ERROR " not in text
        assert rc in (0, 143) or late, (name, rc, text[-3000:])
        assert "Traceback" not in log.read_text(), (name, log.read_text()[-3000:])
        deadline = time.time() + 15
        while _group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), f"{name}: processes outlived the stage"
        junk = [str(p) for d in ("data", "models", "reports", "dvclive") for p in (repo / d).rglob("*")
                if ".tmp" in p.name or ".staging-" in p.name]
        assert not junk, (name, junk)
    r = run(["dvc", "status", "--json"], repo, venv_env)
    changed = []
    for stage, entries in json.loads(r.stdout).items():
        for e in entries:
            if isinstance(e, dict):
                changed += [(stage, kind, path) for kind, paths in e.items() for path in paths]
            elif e != "always changed":
                changed.append((stage, e, ""))
    assert all(kind == "changed outs" and path.startswith("dvclive/") for _, kind, path in changed), r.stdout


def test_real_dataset_edits_rerun_ingestion(repo, venv_env, tmp_path):
    """With data.lrw_root pointing at a real-format tree outside the repo, deleting a clip reruns
    ingest_lrw (through the sources listing); an untouched tree reruns nothing."""
    params = (repo / "params.yaml").read_text()
    root = tmp_path / "lipread_mp4"
    shutil.copytree(repo / "data" / "corpus" / "lipread_mp4", root)
    raw = yaml.safe_load(params)
    raw["data"]["lrw_root"] = str(root)
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        r = run(["dvc", "repro", "ingest_lrw"], repo, venv_env)
        assert "Running stage 'ingest_lrw'" in r.stdout
        n = json.loads((repo / "reports" / "data_quality" / "lrw.json").read_text())["total"]
        r = run(["dvc", "repro", "ingest_lrw"], repo, venv_env)
        assert _ran(r.stdout) == ["sources"]
        clip = sorted(root.glob("*/train/*.mp4"))[0]
        clip.unlink()
        clip.with_suffix(".txt").unlink()
        r = run(["dvc", "repro", "ingest_lrw"], repo, venv_env)
        assert "Running stage 'ingest_lrw'" in r.stdout
        assert json.loads((repo / "reports" / "data_quality" / "lrw.json").read_text())["total"] == n - 1
    finally:
        (repo / "params.yaml").write_text(params)
        run(["dvc", "repro", "ingest_lrw"], repo, venv_env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prefect_deployment_run(repo, venv_env, tmp_path):
    port = _free_port()
    env = dict(venv_env, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_RUNNER_POLL_FREQUENCY="2",
               PREFECT_LOGGING_LEVEL="INFO")
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        deadline = time.time() + 120
        while time.time() < deadline:
            r = subprocess.run([sys.executable, "-c", f"import urllib.request;urllib.request.urlopen('http://127.0.0.1:{port}/api/health')"],
                               capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("prefect server did not start")
        procs.append(subprocess.Popen([sys.executable, "-m", "pipeline.flow", "serve"], cwd=repo, env=env,
                                      stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 120
        while time.time() < deadline:  # the deployment is registered when serve() starts
            r = subprocess.run(["prefect", "deployment", "inspect", "davs/full"], cwd=repo, env=env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("deployment davs/full never appeared:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        before = (repo / "models" / "gen.pt").stat().st_mtime if (repo / "models" / "gen.pt").exists() else 0
        params_before = (repo / "params.yaml").read_bytes()
        r = subprocess.run(["prefect", "deployment", "run", "davs/full", "--param",
                            'overrides={"gen.l1_weight": 3.0}', "--watch", "--watch-timeout", "600"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=700)
        log = (tmp_path / "serve.log").read_text()
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + log[-3000:]
        assert "Completed" in r.stdout
        # overrides run as a DVC experiment: gen reruns in a temporary copy, the workspace stays as it was
        assert "dvc exp run --temp" in log and "Running stage 'gen'" in log
        assert (repo / "params.yaml").read_bytes() == params_before
        assert not (repo / "models" / "gen.pt").exists() or (repo / "models" / "gen.pt").stat().st_mtime == before
        exps = _named(json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout), "prefect-")
        assert exps, "the run is not in dvc exp show"
        assert exps[0]["data"]["params"]["params.yaml"]["data"]["gen"]["l1_weight"] == 3.0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
