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


def test_a_setting_that_needs_another_names_both():
    raw = _raw()
    raw["gen"] |= {"clip_id_weight": 10.0, "train_encoders": False}
    with pytest.raises(ParamsError, match=r"gen\.clip_id_weight: 10\.0, but gen\.train_encoders is false"):
        validate(raw)
    raw["gen"]["train_encoders"] = True
    assert validate(raw).gen.clip_id_weight == 10.0


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


PIPELINE_KEYS = {"data": {"corpus_dir", "lrw_root", "msceleb_tsv", "shards_dir"}, "judges": {"max_clips"},
                 "lips": {"batch_size"}, "eval": {"batch_size", "probe_c", "num_samples", "grid_rows"}}


def _built(p) -> dict[str, list]:
    """What each section of params.yaml feeds: the library configs the stages build from it."""
    from davs.config import DAVSConfig, LipHeadConfig
    from pipeline import stages as st
    from pipeline.params import config

    model = DAVSConfig(**st.model_sizes(p), num_words=5, num_ids=5)
    stage = {s: [st.loop_config(p, s), st.data_spec(p, s), getattr(st, f"{s}_hparams")(p)] for s in ("joint", "disent", "gen")}
    return {"data": [st.lrw_ingest_config(p), st.celeb_ingest_config(p), st.judges_config(p), model,
                     *stage["joint"], *stage["gen"]],
            "synth": [st.corpus_spec(p)], "ingest": [st.lrw_ingest_config(p), st.celeb_ingest_config(p)],
            "model": [model], **stage, "judges": [st.judges_config(p)], "lips": [config(LipHeadConfig, p.lips)],
            "eval": []}


def test_every_setting_is_one_library_field_and_reaches_it():
    """A setting has one home: params.yaml holds its value, the library config field of its name (davs.config)
    its type and comment; the schema is read from those fields and the configs are built by name. So every
    key reaches the field of its name in what its stage builds (no key is validated and then dropped), and
    no library config repeats a setting as a default of its own."""
    from dataclasses import MISSING, fields

    p = load_params(ROOT / "params.yaml")
    for section, objs in _built(p).items():
        keys = type(getattr(p, section)).model_fields
        for key in keys:
            if key in PIPELINE_KEYS.get(section, ()):
                continue
            holders = [o for o in objs if key in {f.name for f in fields(o)}]
            assert holders, f"{section}.{key} reaches no library config"
            for o in holders:
                assert getattr(o, key) == getattr(getattr(p, section), key), f"{section}.{key} in {type(o).__name__}"
        for o in objs:
            defaulted = {f.name for f in fields(o) if f.default is not MISSING or f.default_factory is not MISSING}
            assert not defaulted & set(keys), f"{type(o).__name__} repeats {sorted(defaulted & set(keys))} as defaults"


def test_a_new_field_joins_its_section_with_nothing_else_to_edit():
    """Adding a setting is a field and a line of params.yaml: a field without a default joins its section's
    schema by itself, with the bounds of its annotation, and reaches the config by name."""
    from dataclasses import make_dataclass

    from pydantic import ValidationError

    from davs.config import JointHParams
    from davs.config.types import PosF
    from pipeline.params import config, section, settings_of

    extended = make_dataclass("Extended", [("new_weight", PosF)], bases=(JointHParams,), frozen=True)
    schema = section("JointParams", settings_of(extended))
    raw = _raw()["joint"]
    own = {k: v for k, v in raw.items() if k in schema.model_fields}
    with pytest.raises(ValidationError, match="new_weight"):
        schema.model_validate(own)  # params.yaml without its line
    with pytest.raises(ValidationError, match="greater than 0"):
        schema.model_validate({**own, "new_weight": -1.0})
    got = config(extended, schema.model_validate({**own, "new_weight": 0.5}))
    assert got.new_weight == 0.5 and got.lr == raw["lr"]


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
