import pytest

from ebt_scaling.config import ConfigError, load_config, SIZE_LADDER


def write(tmp_path, text):
    p = tmp_path / "point.yaml"
    p.write_text(text)
    return p


OK = "model: {n_layers: 2, d_model: 64, n_heads: 2}\ntrain: {steps: 10}\n"


def test_loads_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, OK), ["model.d_model=128", "optim.lr=0.01", "data.seq_len=32"])
    assert cfg.model.d_model == 128 and cfg.model.d_ffn == 128
    assert cfg.optim.lr == 0.01 and cfg.data.seq_len == 32 and cfg.total_steps == 10


@pytest.mark.parametrize("text, key, hint", [
    ("model: {n_layerz: 2}\ntrain: {steps: 1}\n", "model.n_layerz", "allowed keys"),
    ("model: {d_model: sixty}\ntrain: {steps: 1}\n", "model.d_model", "expected int"),
    ("model: {d_model: 66, n_heads: 4}\ntrain: {steps: 1}\n", "model.d_model", "not divisible"),
    ("train: {steps: 0}\n", "train.tokens", "exactly one"),
    ("train: {steps: 10, tokens: 1280}\n", "train.tokens", "exactly one"),
    ("data: {seq_len: 128}\ntrain: {tokens: 1000}\n", "train.tokens", "multiple of data.seq_len"),
    ("optim: {lr: -1}\ntrain: {steps: 1}\n", "optim.lr", "out of range; use a value >= 0"),
    ("model: {size: huge}\ntrain: {steps: 1}\n", "model.size", "allowed"),
    ("model: {family: ebt}\nebt: {preset: s3}\ntrain: {steps: 1}\n", "ebt.preset", "allowed"),
    ("data: {source: web}\ntrain: {steps: 1}\n", "data.source", "not one of"),
    ("model: {embed_init: uniform}\ntrain: {steps: 1}\n", "model.embed_init", "one of normal, xavier"),
    ("- a list\n", "", "top level must be a mapping"),
])
def test_bad_yaml_names_file_and_key(tmp_path, text, key, hint):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and key in msg and hint in msg


def test_bad_override_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set train\.stepz=3: unknown key"):   # the override, not the file
        load_config(write(tmp_path, OK), ["train.stepz=3"])


@pytest.mark.parametrize("size", list(SIZE_LADDER))
def test_ladder_sizes_resolve(tmp_path, size):
    cfg = load_config(write(tmp_path, f"model: {{size: {size}}}\ntrain: {{steps: 1}}\n"))
    L, H, D, lr = SIZE_LADDER[size]
    assert (cfg.model.n_layers, cfg.model.n_heads, cfg.model.d_model, cfg.optim.lr) == (L, H, D, lr)


def test_ebt_preset_and_explicit_key_wins(tmp_path):
    cfg = load_config(write(tmp_path, "model: {family: ebt}\nebt: {preset: ebt_s2, langevin_std: 0.5}\ntrain: {steps: 1}\n"))
    assert cfg.ebt.langevin_std == 0.5 and cfg.ebt.replay_buffer == 192 and cfg.family_name == "ebt_s2"
    cfg1 = load_config(write(tmp_path, "model: {family: ebt}\nebt: {preset: ebt_s1}\ntrain: {steps: 1}\n"))
    assert cfg1.ebt.step_embeddings and cfg1.ebt.alpha_learnable and cfg1.ebt.loss == "mean"


def test_exponent_floats_are_numbers(tmp_path):
    cfg = load_config(write(tmp_path, "data: {seq_len: 100}\ntrain: {tokens: 1e6}\noptim: {lr: 3e-4}\n"))
    assert cfg.train.tokens == 1_000_000 and cfg.optim.lr == 3e-4


def test_hash_ignores_where_a_point_runs(tmp_path):
    a = load_config(write(tmp_path, OK))
    b = load_config(write(tmp_path, OK), ["train.checkpoint_dir=/x", "train.threads=1", "train.device=cpu"])
    c = load_config(write(tmp_path, OK), ["model.d_model=128"])
    assert a.hash() == b.hash() != c.hash()
    assert a.hash(with_seed=False) == load_config(write(tmp_path, OK), ["seed=3"]).hash(with_seed=False)
