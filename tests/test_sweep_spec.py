from pathlib import Path

import pytest

from ebt_scaling.config import ConfigError
from ebt_scaling.execute.cli import cmd_plan
from ebt_scaling.flops import train_flops_per_token
from ebt_scaling.sweep import load_spec, plan, resolve_scale
from ebt_scaling.sweep.plan import _with_vocab
from ebt_scaling.sweep.spec import spec_from_dict

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))


def tiny_spec(**over):
    d = {"name": "depth", "families": ["transformer_pp", "ebt_s2"],
         "base": {"model": {"d_model": 32, "n_heads": 2},
                  "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
                  "train": {"batch_size": 8, "steps": 20, "eval_every": 10, "eval_tokens": 256, "log_every": 5}},
         "axes": {"depth": [1, 2]}}
    d.update(over)
    return d


def test_every_shipped_spec_plans_at_both_scales():
    """Every spec of the paper's experiments plans at both scales; the second-vocabulary
    specs (*_bpe: the shipped BPE) are cpu only and say so at paper scale."""
    from ebt_scaling.data.tokenizers import SHIPPED as SHIPPED_TOKENIZERS
    names = {p.stem for p in SWEEPS}
    assert {"data", "batch", "depth", "width", "params", "flops", "thinking", "data_bpe", "params_bpe"} <= names
    for path in SWEEPS:
        cpu_only = path.stem.endswith("_bpe")
        if cpu_only:
            with pytest.raises(ConfigError, match="no 'paper' preset"):
                load_spec(path, "paper")
        for scale in ("cpu",) if cpu_only else ("cpu", "paper"):
            spec = load_spec(path, scale)
            trials = plan(spec)
            assert trials, (path, scale)
            assert spec.name == path.stem
            assert all(t.sweep == path.stem for t in trials)
            assert len({t.id for t in trials}) == len(trials)
            if scale == "cpu":
                want = "shakespeare-bpe4096" if cpu_only else "byte"
                assert want == "byte" or want in SHIPPED_TOKENIZERS
                assert all(t.config.data.tokenizer == want for t in trials)
            else:
                assert all(t.config.data.seq_len == 256 and t.config.data.source == "hf" for t in trials)


def test_cpu_depth_spec_is_small_and_has_both_families():
    trials = plan(load_spec("sweeps/depth.yaml", "cpu"))
    assert {t.family for t in trials} >= {"transformer_pp", "ebt_s2"}
    assert len({t.config.model.n_layers for t in trials}) >= 4
    assert all(32 <= t.config.model.d_model <= 64 and 64 <= t.config.data.seq_len <= 128 for t in trials)
    # two seeds per point, trials at 1 CPU each run two at a time on the 2-core target
    assert all(t.resources.cpus == 1 for t in trials)
    assert sum(t.est_seconds for t in trials) / 2 < 900


def test_ids_are_stable_and_growing_an_axis_keeps_old_ids():
    a = plan(spec_from_dict(tiny_spec()))
    b = plan(spec_from_dict(tiny_spec()))
    assert [t.id for t in a] == [t.id for t in b] and len(a) == 4
    grown = plan(spec_from_dict(tiny_spec(axes={"depth": [1, 2, 3]})))
    assert {t.id for t in a} < {t.id for t in grown} and len(grown) == 6
    seeds = plan(spec_from_dict(tiny_spec(seeds=[0, 1])))
    assert len(seeds) == 8 and {t.seed for t in seeds} == {0, 1}
    assert all(t.id == t.config.hash() for t in seeds)


def test_isoflop_tokens_spend_the_budget_per_family():
    d = tiny_spec(name="flops", axes={"flops": {"budgets": [1e9, 4e9],
                                  "sizes": [{"n_layers": 1, "d_model": 32, "n_heads": 2},
                                            {"n_layers": 2, "d_model": 32, "n_heads": 2}]}})
    d["base"]["train"].pop("steps")
    trials = plan(spec_from_dict(d))
    assert len(trials) == 8
    for t in trials:
        budget = float(t.point["flops"])
        spent = train_flops_per_token(_with_vocab(t.config)) * t.config.total_tokens
        assert spent == pytest.approx(budget, rel=0.1)
    tpp = [t for t in trials if t.family == "transformer_pp"][0]
    ebt = [t for t in trials if t.family == "ebt_s2" and t.point == tpp.point][0]
    assert ebt.config.total_tokens < tpp.config.total_tokens      # costlier per token -> fewer tokens


def test_rules_apply_and_clash_with_axes():
    d = tiny_spec(rules={"lr": "lr_from_ladder", "batch": {"name": "batch_sqrt_params", "ref_params": 1000,
                                                             "ref_batch": 4}})
    t = plan(spec_from_dict(d))
    assert all(x.config.optim.lr == pytest.approx(2.4e-3) for x in t)
    assert t[0].config.train.batch_size != t[-1].config.train.batch_size
    with pytest.raises(ConfigError, match="rules.batch"):
        spec_from_dict(tiny_spec(name="batch", rules={"batch": "batch_sqrt_params"}, axes={"batch_size": [4, 8]}))


@pytest.mark.parametrize("over, key", [
    ({"famiies": ["ebt_s2"]}, "famiies: unknown key"),
    ({"families": ["ebt_s3"]}, "families"),
    ({"axes": {"depht": [1]}}, "axes.depht"),
    ({"axes": {"depth": [0]}}, "axes.depth"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"x": "heads"}, "x:"),
    ({"rules": {"lr": "cosine"}}, "rules.lr"),
    ({"resources": {"gpus": -1}}, "resources.gpus"),
    ({"backend": {"slurm": {"partiton": "gpu"}}}, "backend.slurm.partiton"),
    ({"axes": {"tokens": ["1e9"]}}, "1.0e\\+9"),
])
def test_validation_names_file_and_key(over, key):
    with pytest.raises(ConfigError, match=key) as e:
        spec_from_dict(tiny_spec(**over), "sweeps/mine.yaml")
    assert str(e.value).startswith("sweeps/mine.yaml")


def test_a_bad_base_config_is_reported_with_the_trial():
    d = tiny_spec()
    d["base"]["model"]["n_heads"] = 3
    with pytest.raises(ConfigError, match=r"mine.yaml .*model.d_model"):
        plan(spec_from_dict(d, "mine.yaml"))


def test_scales(tmp_path):
    assert resolve_scale("auto", has_gpu=False)[0] == "cpu"
    assert resolve_scale("auto", has_gpu=True)[0] == "paper"
    with pytest.raises(ConfigError, match="scales"):
        load_spec("sweeps/depth.yaml", "laptop")


def test_plan_cli_prints_trials_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import argparse
    here = Path(__file__).parent.parent
    cmd_plan(argparse.Namespace(spec=str(here / "sweeps/depth.yaml"), scale="auto"))
    out = capsys.readouterr().out
    assert "scale: cpu" in out and "total: 24 trials" in out and all(f in out for f in ("transformer_pp", "ebt_s1", "ebt_s2"))
    assert list(tmp_path.iterdir()) == []
