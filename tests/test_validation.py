"""Validation before any work (issue 13, item 7): every preset, backend keys, repeated
YAML keys, ranges, devices and files, bounded messages and bounded alias expansion."""
import time
from pathlib import Path

import pytest
import torch
import yaml

from ebt_scaling.config import ConfigError, load_config, load_yaml
from ebt_scaling.sweep.plan import load_plan
from ebt_scaling.train.preflight import check_resources, check_runnable

ROOT = Path(__file__).resolve().parents[1]
POINT = "model: {n_layers: 2, d_model: 64, n_heads: 2}\ntrain: {steps: 10}\n"


def write(tmp_path, text, name="x.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def spec_with(tmp_path, change) -> Path:
    """sweeps/depth.yaml with `change(tree)` applied."""
    tree = yaml.safe_load((ROOT / "sweeps/depth.yaml").read_text())
    change(tree)
    return write(tmp_path, yaml.safe_dump(tree), "depth.yaml")


def error_of(fn, *args) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return str(e.value)


# ------------------------------------------------------------------ every preset
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_a_mistake_in_the_other_preset_stops_any_scale(tmp_path, scale):
    def bad_paper(t):
        t["scales"]["paper"]["base"]["model"]["norm_eps"] = -1
    p = spec_with(tmp_path, bad_paper)
    msg = error_of(load_plan, p, scale)
    assert msg.startswith(f"{p} (preset paper): base.model.norm_eps: -1")

    def bad_paper_trial(t):        # valid on its own, wrong only once a paper trial is built
        t["scales"]["paper"]["base"]["train"]["eval_tokens"] = 100       # < seq_len 256
    msg = error_of(load_plan, spec_with(tmp_path, bad_paper_trial), scale)
    assert "(preset paper) [trial" in msg and "train.eval_tokens" in msg


def test_a_default_every_preset_overrides_is_still_checked(tmp_path):
    def bad_default(t):
        t["base"]["optim"]["weight_decay"] = float("nan")
    msg = error_of(load_plan, spec_with(tmp_path, bad_default), "cpu")
    assert "base.optim.weight_decay: nan is not a finite number" in msg

    def shadowed(t):
        t["axes"] = {"depth": [1]}        # both presets set their own axes
    msg = error_of(load_plan, spec_with(tmp_path, shadowed), "cpu")
    assert "axes: every preset (cpu, paper) sets its own axes" in msg


# ------------------------------------------------------------------ backend keys
@pytest.mark.parametrize("backend, key, why", [
    ({"kube": 1}, "backend.kube", "unknown key; allowed keys are ray, slurm"),
    ({"slurm": {"cpus": -3}}, "backend.slurm.cpus", "-3 is out of range"),
    ({"slurm": {"array_parallelism": 0}}, "backend.slurm.array_parallelism", "0 is out of range"),
    ({"slurm": {"time": "0"}}, "backend.slurm.time", "not a time limit"),
    ({"slurm": {"time": "soon"}}, "backend.slurm.time", "not a time limit"),
    ({"slurm": {"gpus": 1.5}}, "backend.slurm.gpus", "expected int"),
    ({"ray": {"object_store_mb": 10}}, "backend.ray.object_store_mb", "Ray needs at least 80 MB"),
    (3, "backend", "expected dict"),
])
def test_backend_keys_are_checked(tmp_path, backend, key, why):
    def set_backend(t):
        t["scales"]["cpu"]["backend"] = backend
    msg = error_of(load_plan, spec_with(tmp_path, set_backend), "paper")     # the cpu preset, at paper scale
    assert f"(preset cpu): {key}" in msg and why in msg, msg


# ------------------------------------------------------------------ repeated keys, aliases, depth
def test_a_repeated_key_is_an_error_naming_it_and_both_lines(tmp_path):
    p = write(tmp_path, "model:\n  d_model: 64\n  n_heads: 2\n  d_model: 128\ntrain: {steps: 1}\n")
    assert error_of(load_config, p) == (f"{p}: line 4, column 3: model.d_model: this key appears twice in one "
                                        "mapping (lines 2 and 4); keep one")
    p = write(tmp_path, "train: {steps: 1, steps: 2}\n")
    assert "train.steps: this key appears twice" in error_of(load_config, p)


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    p = write(tmp_path, "model: &m {n_layers: 2, d_model: 64, n_heads: 2}\n"
                        "x: {<<: *m, d_model: 32}\ny: [*m, *m]\n", "spec.yaml")
    data = load_yaml(p)
    assert data["x"] == {"n_layers": 2, "d_model": 32, "n_heads": 2} and data["y"] == [data["model"]] * 2


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    p = write(tmp_path, f"name: [{', '.join(levels)}]\ntrain: {{steps: 1}}\n")
    t0 = time.perf_counter()
    msg = error_of(load_config, p)
    assert time.perf_counter() - t0 < 2
    assert msg.startswith(f"{p}: line 1") and "expands to more than 100,000 values" in msg and len(msg) < 400


def test_deep_nesting_is_refused(tmp_path):
    for depth in (100, 5000):
        msg = error_of(load_config, write(tmp_path, "train: " + "[" * depth + "]" * depth + "\n"))
        assert "nested" in msg and len(msg) < 400


def test_unreadable_files_are_clean_errors(tmp_path):
    assert "no such file" in error_of(load_config, tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_bytes(b"train: \xff\xfe\n")
    assert "not UTF-8" in error_of(load_config, tmp_path / "x.yaml")
    assert "cannot read it" in error_of(load_config, tmp_path)
    assert "not valid YAML at line 2, column 1: expected the node content" in error_of(
        load_config, write(tmp_path, "train: [\n"))


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("text, key, why", [
    ("model: {norm_eps: -1}", "model.norm_eps", "out of range; use a value > 0"),
    ("model: {rope_theta: 0}", "model.rope_theta", "out of range; use a value > 0"),
    ("model: {d_ffn: -5}", "model.d_ffn", "-5 is out of range"),
    ("model: {n_layers: 2.5}", "model.n_layers", "expected int (a whole number)"),
    ("model: {n_layers: 1e30}", "model.n_layers", "does not fit in 64 bits"),
    ("model: {n_layers: 4096}", "model.n_layers", "<= 1024"),
    ("seed: -1", "seed", "-1 is out of range"),
    ("optim: {lr: .nan}", "optim.lr", "not a finite number"),
    ("optim: {lr: .inf}", "optim.lr", "not a finite number"),
    ("optim: {betas: [0.9, 1.5]}", "optim.betas", "out of range"),
    ("data: {markov_order: 1000000000000000000, source: markov}", "data.markov_order", "<= 16"),
    ("data: {markov_vocab: 65536, markov_order: 2, source: markov}", "data.markov_order", "too big"),
    ("data: {source: file, path: notes.docx}", "data.path", "unsupported suffix"),
    ("train: {device: tpu}", "train.device", "'tpu' is not a device"),
    ("name: ../../etc", "name", "without /"),
    ("model: {family: ebt}\nebt: {alpha_ref_vocab: 0}", "ebt.alpha_ref_vocab", "0 is out of range"),
    ("model: {family: ebt}\nebt: {eval_steps: -1}", "ebt.eval_steps", "-1 is out of range"),
])
def test_numbers_and_names_are_range_checked(tmp_path, text, key, why):
    body = text + ("\ntrain: {steps: 10}\n" if "train:" not in text else "\n")
    if "train:" in text:
        body = text.replace("train: {", "train: {steps: 10, ") + "\n"
    msg = error_of(load_config, write(tmp_path, body))
    assert msg.startswith(f"{tmp_path / 'x.yaml'}: {key}: ") and why in msg, msg


def test_budgets_stay_within_64_bits(tmp_path):
    msg = error_of(load_config, write(tmp_path, "train: {tokens: 1.28e30}\n"))
    assert "train.tokens: 1.28e+30 does not fit in 64 bits" in msg
    msg = error_of(load_config, write(tmp_path, "train: {steps: 9000000000000000000, batch_size: 16}\n"))
    assert "train.steps" in msg and "more than 64 bits" in msg


def test_axis_values_are_sane(tmp_path):
    def huge_depth(t):
        t["scales"]["cpu"]["axes"]["depth"] = [1e30]
    msg = error_of(load_plan, spec_with(tmp_path, huge_depth), "cpu")
    assert "(preset cpu): axes.depth: 1e+30 does not fit in 64 bits" in msg

    def deep(t):
        t["scales"]["cpu"]["axes"]["depth"] = [2, 5000]
    msg = error_of(load_plan, spec_with(tmp_path, deep), "cpu")
    assert "axes.depth: 5000 is out of range; use a value >= 1 and <= 1024" in msg

    def seeds(t):
        t["scales"]["cpu"]["seeds"] = [0, -1]
    assert "seeds: -1 is out of range" in error_of(load_plan, spec_with(tmp_path, seeds), "cpu")


def test_a_rule_without_a_usable_value_names_the_rule(tmp_path):
    def rule(t):
        t["scales"]["cpu"]["rules"] = {"batch": {"name": "batch_sqrt_params", "ref_params": 1e-300,
                                                    "multiple": 1e-300}}
        t["scales"]["cpu"]["axes"] = {"depth": [1]}
    msg = error_of(load_plan, spec_with(tmp_path, rule), "cpu")
    assert "(preset cpu): rules.batch: batch_sqrt_params gives no usable value" in msg


def test_alpha_ref_vocab_zero_is_a_config_error_not_a_division(tmp_path):
    p = write(tmp_path, "model: {family: ebt}\nebt: {alpha_ref_vocab: 0}\ntrain: {steps: 1}\n")
    assert "ebt.alpha_ref_vocab: 0 is out of range; use a value >= 1" in error_of(load_config, p)


# ------------------------------------------------------------------ bounded messages
def test_messages_never_print_unbounded_values(tmp_path):
    big = "x" * 1_000_000
    for text in (f"model: {{family: {big}}}\ntrain: {{steps: 1}}\n", f"{big}: 1\n",
                 f"model: {{n_layers: [{', '.join(['1'] * 20000)}]}}\n", f"optim: {{lr: {'9' * 5000}}}\n"):
        msg = error_of(load_config, write(tmp_path, text))
        assert len(msg) < 400 + len(str(tmp_path)), len(msg)
    point = write(tmp_path, POINT)
    for pairs in ([f"model.d_model={big}"], [f"model.d_model=2{'0' * 30}"], [f"train.tokens={'1' * 30}"] * 50):
        msg = error_of(load_config, point, pairs)
        assert msg.startswith("--set ") and len(msg) < 400 + len(str(tmp_path)), msg[:300]


def test_overrides_that_are_not_yaml_are_clean_errors(tmp_path):
    msg = error_of(load_config, write(tmp_path, POINT), ["train.steps=[1"])
    assert msg.startswith("--set 'train.steps=[1': the value is not valid YAML (line 1")


# ------------------------------------------------------------------ this machine: devices, files, resources
def test_a_device_this_machine_lacks_stops_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(write(tmp_path, POINT), ["train.device=cuda"])
    assert "train.device: cuda asked for, but torch" in error_of(check_runnable, cfg, "x.yaml")
    check_runnable(cfg, "x.yaml", devices=False)      # a Slurm node may have one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_runnable(cfg, "x.yaml")
    cfg = load_config(write(tmp_path, POINT), ["train.device=cuda:2"])
    assert "sees 2 CUDA GPU(s)" in error_of(check_runnable, cfg, "x.yaml")


def test_a_missing_data_file_stops_before_work(tmp_path):
    cfg = load_config(write(tmp_path, POINT), ["data.source=file", f"data.path={tmp_path}/corpus.txt"])
    assert f"x.yaml: data.path: '{tmp_path}/corpus.txt' does not exist" in error_of(check_runnable, cfg, "x.yaml")
    (tmp_path / "corpus.txt").write_text("to be or not to be\n" * 100)
    check_runnable(cfg, "x.yaml")
    cfg = load_config(write(tmp_path, POINT), ["data.tokenizer=/nowhere/tokenizer.json"])
    assert "data.tokenizer: '/nowhere/tokenizer.json' does not exist" in error_of(check_runnable, cfg, "x.yaml")


def test_resources_this_machine_lacks_are_refused_for_a_local_ray(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "resources.cpus: 100000 per trial" in error_of(check_resources, 100000, 0, "s.yaml")
    assert "resources.gpus: 0.5 per trial, but torch sees 0 GPU(s)" in error_of(check_resources, 1, 0.5, "s.yaml")
    check_resources(1, 0, "s.yaml")


def test_text_values_are_bounded(tmp_path):
    msg = error_of(load_config, write(tmp_path, f"data: {{tokenizer: {'t' * 5000}}}\ntrain: {{steps: 1}}\n"))
    assert msg == f"{tmp_path / 'x.yaml'}: data.tokenizer: a text of 5,000 characters; write at most 4,096"
