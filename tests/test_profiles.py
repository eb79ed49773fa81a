"""Profile validation: every bad value is one line naming the file, section and key, exit 2, before
anything is written; a good profile resolves into the settings dataclasses with defaults filled in."""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
import tomli_w

from bench.cli import main
from bench.profiles import PROFILE_DIR, collective_settings, method_settings
from methods.settings import (
    CollectiveSettings,
    DeepEMDSettings,
    LearngeneSettings,
    MAMLSettings,
    ProtoNetSettings,
    SettingsError,
    build,
)

SMOKE = tomllib.loads((PROFILE_DIR / "smoke.toml").read_text())


def _write(tmp_path: Path, section: str, key: str, value) -> Path:
    prof = tomllib.loads((PROFILE_DIR / "smoke.toml").read_text())
    node = prof
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(prof))
    return path


BAD = [  # (section, key, value, what the message must say)
    ("individual", "lrr", 0.01, "did you mean 'lr'"),
    ("methods.protonet", "meta_iteration", 3, "did you mean 'meta_iterations'"),
    ("collective", "epochs", "ten", "must be an integer"),
    ("methods.finetune", "pretrain_optimizer", "rmsprop", "must be 'adam' or 'sgd'"),
    ("individual", "lr", -0.005, "must be > 0"),
    ("methods.maml", "outer_lr", -1e-3, "must be > 0"),
    ("individual", "epochs", 0, "must be > 0"),
    ("collective", "epochs", 0, "must be > 0"),
    ("individual", "width", 0, "must be > 0"),
    ("collective", "width", -0.5, "must be > 0"),
    ("episodes", "queries", "some", "must be an integer or 'all'"),
    ("experiments.fig4", "sample_sizes", [10, "20"], "must be a list of an integer"),
    ("data", "image_size", 8, "8 px is below the"),
]


@pytest.mark.parametrize("section,key,value,says", BAD, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD])
def test_bad_profile_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, section, key, value, says):
    path = _write(tmp_path, section, key, value)
    results = tmp_path / "results"
    code = main(["run", "--method", "all", "--profile", str(path), "--dataset", "synthetic",
                 "--results-dir", str(results)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert str(path) in lines[0] and f"[{section}] {key}" in lines[0] and says in lines[0], lines[0]
    assert not results.exists()


def test_unknown_section_and_family_suggest_the_right_name(capsys, tmp_path):
    for section, says in (("individal", "did you mean 'individual'"), ("methods.protonett", "did you mean 'protonet'")):
        prof = dict(SMOKE)
        if "." in section:
            prof = {**SMOKE, "methods": {**SMOKE["methods"], section.split(".")[1]: {"lr": 0.1}}}
        else:
            prof = {**SMOKE, section: {"lr": 0.1}}
        path = tmp_path / "bad.toml"
        path.write_text(tomli_w.dumps(prof))
        code = main(["run", "--profile", str(path), "--dataset", "synthetic", "--results-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and says in err, err
        assert not (tmp_path / "r").exists()


def test_image_size_below_the_collective_network_needs_is_refused_for_learngene(capsys, tmp_path):
    code = main(["run", "--method", "learngene", "--profile", "smoke", "--dataset", "synthetic", "--image-size", "24",
                 "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--image-size 24 is too small for learngene" in err and "allowed 32 to 256 px" in err
    assert not (tmp_path / "r").exists()


def test_profile_image_size_below_the_collective_network_needs_names_the_file(capsys, tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text((PROFILE_DIR / "smoke.toml").read_text().replace("image_size = 32", "image_size = 24", 1))
    code = main(["run", "--method", "learngene", "--profile", str(prof), "--dataset", "synthetic",
                 "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "24 px is below the 32 px the collective network needs" in err
    assert str(prof) in err and not (tmp_path / "r").exists()


def test_every_shipped_profile_validates():
    for path in sorted(PROFILE_DIR.glob("*.toml")):
        prof = tomllib.loads(path.read_text())
        for name in ("learngene-official", "protomaml", "finetune++", "deepemd", "matchingnet", "scratch"):
            method_settings(prof, name)


def test_settings_resolve_sections_variants_and_defaults():
    s = method_settings(SMOKE, "learngene-official")
    assert isinstance(s, LearngeneSettings)
    assert s.ewc_lambda == 0.0 and s.faithful_softmax is True and s.reuse_across_tasks  # the variant
    assert s.epochs == SMOKE["individual"]["epochs"] and s.fisher_samples == 128  # [individual], [methods.learngene]
    assert s.collective.checkpoints == (1, 2, 3)  # Figure 6a's checkpoints, kept by the shared collective run
    m = method_settings(SMOKE, "protomaml")
    assert isinstance(m, MAMLSettings) and m.proto and m.bn_mode == "support" and m.n_way == 5
    assert m.width == SMOKE["individual"]["width"]
    d = method_settings(SMOKE, "deepemd")  # pre-training from [methods.finetune], the rest from [methods.deepemd]
    assert isinstance(d, DeepEMDSettings) and d.pretrain_lr == SMOKE["methods"]["finetune"]["pretrain_lr"]
    assert d.meta_iterations == SMOKE["methods"]["deepemd"]["meta_iterations"]
    p = method_settings({}, "protonet")  # a key left out takes the field's default
    assert p == ProtoNetSettings()
    assert method_settings(SMOKE, "learngene", {"checkpoint": 1}).checkpoint == 1


def test_artifact_key_fields_and_frozen():
    c = collective_settings(SMOKE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3  # type: ignore[misc]
    assert "open_world_threshold" in CollectiveSettings.NOT_IN_KEY
    with pytest.raises(SettingsError, match=r"\[collective\] tasks: must be > 0"):
        build(CollectiveSettings, [("collective", {"tasks": 0})])


def test_a_variant_section_overrides_its_family_for_that_variant_only(capsys, tmp_path):
    """`[methods.protomaml] inner_steps_test = 1` changes Proto-MAML's test-time steps, not MAML's;
    a key the variant fixes (its `proto` flag) is refused instead of silently overridden."""
    prof = {**SMOKE, "methods": {**SMOKE["methods"], "protomaml": {"inner_steps_test": 1}}}
    assert method_settings(prof, "protomaml").inner_steps_test == 1
    assert method_settings(prof, "maml").inner_steps_test == SMOKE["methods"]["maml"]["inner_steps_test"] != 1
    assert method_settings(prof, "protomaml").proto  # the variant's own overrides still win
    for section, says in (({"proto": False}, "[methods.protomaml] proto: is fixed by the method protomaml"),
                          ({"inner_step_test": 1}, "did you mean 'inner_steps_test'")):
        path = tmp_path / "bad.toml"
        path.write_text(tomli_w.dumps({**SMOKE, "methods": {**SMOKE["methods"], "protomaml": section}}))
        code = main(["run", "--profile", str(path), "--dataset", "synthetic", "--results-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and says in err, err
        assert not (tmp_path / "r").exists()


def test_figure_6b_uniform_width_is_a_nested_cell_option():
    """[experiments.fig6] uniform_width reaches panel b's variants as the cell option
    `collective.uniform_width` (one override mechanism), and only them."""
    from bench.cell_env import RunSpec, cell_options
    from bench.experiments import fig6

    spec = RunSpec("synthetic", "", 32, SMOKE, "")
    position = [c for c in fig6.cells(spec, ["learngene"]) if c.params["panel"] == "position"]
    assert {c.method for c in position} == {"learngene-front", "learngene-middle", "learngene-top-uniform"}
    for c in position:
        s = method_settings(SMOKE, c.method, cell_options(c))
        assert s.ancestor == "continual-uniform" and s.collective.uniform_width == 32
    assert method_settings(SMOKE, "learngene").collective == collective_settings(SMOKE)
