"""Weight for weight against the paper's reference code (alexiglad/EBT).

Runs only where $EBT_REFERENCE points at a checkout of it (the reference is not
vendored, and CI has no network beyond PyPI): our weights are copied into the
reference's models and both are run on the same tokens, initial logits and noise.
Tolerances are fp32 rounding, amplified through the thinking steps by alpha.
"""
import os
import sys
from pathlib import Path

import pytest

REF = os.environ.get("EBT_REFERENCE")
pytestmark = [pytest.mark.reference,
              pytest.mark.skipif(not REF, reason="set EBT_REFERENCE to a checkout of alexiglad/EBT")]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def mods():
    import compare_reference
    return compare_reference, compare_reference.load_reference(Path(REF))


@pytest.mark.parametrize("kind, alpha, noise, tol", [("transformer_pp", 0, 0, 1e-5), ("ebt_s2", 1.33, 3.0, 1e-4),
                                                     ("ebt_s1", 1.33, 0.0, 1e-3)])
def test_same_outputs_and_gradients_as_the_reference(mods, kind, alpha, noise, tol):
    cr, ref = mods
    r = cr.compare(ref, kind, L=2, d=32, h=2, S=16, B=3, V=256, alpha=alpha, noise=noise)
    assert r["loss rel diff"] < tol
    assert max(r["logits max rel diff (per step)"]) < tol
    assert max(r.get("mean energy rel diff (per step)", [0.0])) < tol
    assert r["grad max rel diff"][0] < tol
