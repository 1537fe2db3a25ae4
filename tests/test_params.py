import pytest
import yaml

from pipeline.params import ParamsError, load_params, set_params, validate

from .conftest import ROOT


def _raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repo_params_load_into_typed_configs():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p.gen.l1_weight, float)
    assert p.data.crop_box == (40, 48, 160)
    assert p.ingest.frame_format in ("jpg", "npy")


def test_unknown_key_is_named():
    raw = _raw()
    raw["gen"]["l1_wieght"] = 3.0
    with pytest.raises(ParamsError, match=r"gen\.l1_wieght: unknown key"):
        validate(raw)


def test_wrong_type_is_named():
    raw = _raw()
    raw["gen"]["l1_weight"] = "ten"
    with pytest.raises(ParamsError, match=r"gen\.l1_weight"):
        validate(raw)
    raw = _raw()
    raw["joint"]["steps"] = 1.5
    with pytest.raises(ParamsError, match=r"joint\.steps"):
        validate(raw)


def test_missing_key_and_section_are_named():
    raw = _raw()
    del raw["disent"]["dis_lr"]
    with pytest.raises(ParamsError, match=r"disent\.dis_lr: Field required"):
        validate(raw)
    raw = _raw()
    del raw["eval"]
    with pytest.raises(ParamsError, match=r"\beval: Field required"):
        validate(raw)


def test_out_of_range_values_rejected():
    raw = _raw()
    raw["ingest"]["max_bad_fraction"] = 1.5
    with pytest.raises(ParamsError, match=r"ingest\.max_bad_fraction"):
        validate(raw)


def test_set_params_validates_and_writes(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text((ROOT / "params.yaml").read_text())
    set_params(f, {"gen.l1_weight": 10.0})
    assert load_params(f).gen.l1_weight == 10.0
    with pytest.raises(ParamsError, match="gen.nope"):
        set_params(f, {"gen.nope": 1})
    with pytest.raises(ParamsError, match=r"gen\.l1_weight"):
        set_params(f, {"gen.l1_weight": "x"})
    assert load_params(f).gen.l1_weight == 10.0  # the failed writes changed nothing


def test_clip_geometry_matches_the_library():
    """The cross-field checks use LRW's clip length and frame size; they must be the library's."""
    from davs.judges.data import LRW_FRAMES
    from pipeline.params import LRW_CLIP_FRAMES

    assert LRW_CLIP_FRAMES == LRW_FRAMES


def test_library_defaults_are_the_committed_params():
    """Each library config's defaults are what params.yaml sets, so code that builds one without params
    (a notebook, a benchmark, a test) gets the pipeline's model, not another one. Fields params.yaml does not
    own (class counts, paths, a stage's step count) are left out."""
    from dataclasses import fields

    from davs.data.ingest_lrw import LRWIngestConfig
    from davs.data.ingest_msceleb import CelebIngestConfig
    from davs.judges.train import JudgeConfig
    from davs.models import DAVSConfig
    from davs.synth.corpus import CorpusSpec
    from davs.training.tasks import DisentHParams, GenHParams, JointHParams
    from pipeline import stages as st

    p = load_params(ROOT / "params.yaml")
    built = {
        "DAVSConfig": (DAVSConfig(**st.model_sizes(p)), DAVSConfig()),
        "JointHParams": (st.joint_hparams(p), JointHParams()),
        "DisentHParams": (st.disent_hparams(p), DisentHParams()),
        "GenHParams": (st.gen_hparams(p), GenHParams()),
        "JudgeConfig": (st.judges_config(p), JudgeConfig()),
        "CorpusSpec": (st.corpus_spec(p), CorpusSpec()),
        "LRWIngestConfig": (st.lrw_ingest_config(p), LRWIngestConfig()),
        "CelebIngestConfig": (st.celeb_ingest_config(p), CelebIngestConfig()),
    }
    differ = {name: {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in fields(a)
                     if getattr(a, f.name) != getattr(b, f.name)} for name, (a, b) in built.items()}
    assert not any(differ.values()), f"library defaults vs params.yaml (params, default): {differ}"


@pytest.mark.parametrize(("amp", "units", "expected"), [(True, True, True), (True, False, False), (False, True, False)])
def test_stage_amp_autocasts_on_a_cpu_only_where_it_has_bf16_units(monkeypatch, amp, units, expected):
    import davs.devices
    from pipeline.stages import loop_config

    raw = _raw()
    raw["gen"]["amp"] = amp
    monkeypatch.setattr(davs.devices, "cpu_has_bf16_units", lambda: units)
    loop = loop_config(validate(raw), "gen")
    assert loop.amp is amp and loop.amp_on_cpu is expected


def test_bf16_units_probe_agrees_with_the_cpu_flags():
    from pathlib import Path

    from davs.devices import cpu_has_bf16_units

    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = {f for line in info.read_text().splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    assert cpu_has_bf16_units() is ("amx_tile" in flags)


def test_flow_overrides_are_checked_before_an_experiment_runs(tmp_path):
    """Prefect's ``overrides`` become ``dvc exp run -S`` arguments only when every key exists and the result
    validates; params.yaml itself is never written."""
    import shutil

    from pipeline.flow import check_overrides

    f = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", f)
    before = f.read_bytes()
    assert check_overrides(f, {"gen.l1_weight": 10, "seed": 3}) == ["-S", "gen.l1_weight=10", "-S", "seed=3"]
    with pytest.raises(ValueError, match="gen.nope"):
        check_overrides(f, {"gen.nope": 1})
    with pytest.raises(ParamsError, match="gen.l1_weight"):
        check_overrides(f, {"gen.l1_weight": "x"})
    assert f.read_bytes() == before
