"""Config: YAML + key=value overrides, strict keys with suggestions, shipped configs validate."""

from pathlib import Path

import pytest
import yaml

from radsearch.errors import ConfigError
from radsearch.losses import METHODS
from radsearch.training.compare import parse_method_spec
from radsearch.training.config import Config, apply_override, load_config
from radsearch.reporting.demo import DEMO_CONFIG

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_overrides_are_parsed_as_yaml_and_type_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 5\noptim:\n  lr: 0.01\n")
    cfg = load_config(path, ["train.epochs=7", "optim.lr=1e-3", "method.options={lam: 0.5}",
                             "data.manifest=some/file.csv", "model.weights=none"])
    assert cfg.train.epochs == 7 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.method.options == {"lam": 0.5}
    assert cfg.data.manifest == "some/file.csv"
    assert cfg.optim.weight_decay == pytest.approx(1e-4)  # untouched default


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.seed=3", "method.name=Triplet"])
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("override, match", [
    ("train.epoch=3", r"unknown key 'train.epoch' \(did you mean train.epochs\?\)"),
    ("trian.epochs=3", r"unknown key 'trian' \(did you mean train\?\)"),
    ("train.epochs=ten", r"train.epochs='ten'.*integer"),
    ("train.epochs=0", r"train.epochs=0.*greater than or equal to 1"),
    ("optim.name=lamb", r"optim.name='lamb'"),
    ("data.synth.kind=spine", r"data.synth.kind='spine'"),
    ("epochs", r"expected key=value"),
    ("train.epochs.x=1", r"train.epochs=.*valid integer"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(scalar)


def test_apply_override_creates_nested_sections():
    data: dict = {}
    apply_override(data, "data.synth.n_subjects=12")
    apply_override(data, "compare.methods=[A, B]")
    assert data == {"data": {"synth": {"n_subjects": 12}}, "compare": {"methods": ["A", "B"]}}


def test_run_dir_default_name():
    cfg = load_config(None, ["run.out_dir=/x", "train.seed=4", "method.name=Triplet"])
    assert cfg.run_dir() == Path("/x/Triplet-s4")


FORENSIC_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("mmdl-"))


@pytest.mark.parametrize("path", FORENSIC_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_name_real_methods(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.method.name in METHODS
    for spec in cfg.compare.methods:
        name, options, _ = parse_method_spec(spec)
        assert name in METHODS


def test_reproduction_configs_carry_the_published_hyper_parameters():
    for name, preset in (("oai.yaml", "oai"), ("cxr.yaml", "cxr")):
        cfg = load_config(CONFIGS / name)
        assert (cfg.model.name, cfg.model.embedding_dim) == ("resnet18", 128)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-4, 1e-4)
        assert cfg.train.epochs == 100
        assert cfg.train.subjects_per_batch * cfg.train.images_per_subject == 128
        assert cfg.data.preset == cfg.method.preset == preset
        assert len(cfg.compare.methods) == 9 and set(cfg.compare.methods) <= set(METHODS)
    grid = load_config(CONFIGS / "grid-adatriplet-oai.yaml")
    pairs = {tuple(sorted(parse_method_spec(m)[1].items())) for m in grid.compare.methods
             if m.startswith("AdaTriplet[")}
    assert len(pairs) == 16


def test_demo_yaml_is_the_embedded_demo_default():
    shipped = load_config(CONFIGS / "demo.yaml")
    embedded = load_config(None, base=DEMO_CONFIG)
    assert shipped == embedded
    assert yaml.safe_load((CONFIGS / "demo.yaml").read_text())


def test_method_spec_parsing():
    assert parse_method_spec("AdaTriplet[epsilon=0.5,beta=0.75]") == (
        "AdaTriplet", {"epsilon": 0.5, "beta": 0.75}, "AdaTriplet_epsilon=0.5_beta=0.75")
    with pytest.raises(ConfigError, match="expected NAME"):
        parse_method_spec("Tripplet")
    with pytest.raises(ConfigError, match="not key=value"):
        parse_method_spec("Triplet[0.5]")


def test_cli_method_list_splits_outside_brackets():
    from radsearch.cli.train import _split_methods

    assert _split_methods("AdaTriplet-AM, AdaTriplet[epsilon=0.5,beta=0.75],Triplet") == [
        "AdaTriplet-AM", "AdaTriplet[epsilon=0.5,beta=0.75]", "Triplet"]


def test_synthetic_cohort_cache_depends_on_the_difficulty_knobs(tmp_path):
    from radsearch.training.cohorts import synthesise
    from radsearch.training.config import SynthConfig

    plain = SynthConfig(n_subjects=3, image_size=32)
    harder = SynthConfig(n_subjects=3, image_size=32, difficulty={"acquisition_noise": 3.0})
    first = synthesise(plain, tmp_path)
    second = synthesise(harder, tmp_path)
    assert first != second and first.is_file() and second.is_file()
    assert synthesise(SynthConfig(n_subjects=3, image_size=32,
                                  difficulty={"acquisition_noise": 3.0}), tmp_path) == second


def test_a_data_source_on_the_command_line_replaces_the_configs(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  synth: {kind: knee, n_subjects: 10}\n")
    cfg = load_config(config, ["data.manifest=cohort.csv"])
    assert cfg.data.manifest == "cohort.csv" and cfg.data.synth is None
    config.write_text("data:\n  manifest: cohort.csv\n")
    cfg = load_config(config, ["data.synth.kind=chest"])
    assert cfg.data.manifest is None and cfg.data.synth.kind == "chest"
    # both named: nothing is dropped silently (the engine then asks for exactly one source)
    cfg = load_config(config, ["data.manifest=a.csv", "data.synth.kind=knee"])
    assert cfg.data.manifest == "a.csv" and cfg.data.synth.kind == "knee"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("mmdl-*.yaml")), ids=lambda p: p.name)
def test_shipped_mmdl_configs_validate(path):
    from radsearch.training.mmdl import load_mmdl_config

    assert load_mmdl_config(path) is not None
