"""Property: every mutated sweep spec or point config ends in a clean error (file, key,
bounded message) or a sane plan that would train; never a traceback, a hang or an
out-of-range value accepted. The mutations and the judge: tests/fuzz_inputs.py.

EBT_FUZZ_EXAMPLES=5000 runs more cases (default 1000: about 35 s on 2 shared cores)."""
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from fuzz_inputs import GOOD, Case, SPECS, judge, make_case


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=int(os.environ.get("EBT_FUZZ_EXAMPLES", 1000)), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_mutated_input_is_a_clean_error_or_a_sane_plan(folder, data):
    case = make_case(lambda options: data.draw(st.sampled_from(options)))
    outcome, detail = judge(case, folder)
    assert outcome in GOOD, f"{outcome}: {case.source.name} (scale {case.scale}) {case.kind} {case.detail}: {detail}"


def test_the_judge_catches_what_it_looks_for(tmp_path):
    spec = SPECS[0]
    text = spec.read_text()
    # a never-valid mutation that nothing rejected
    assert judge(Case(spec, "x", "", text, must_fail=True), tmp_path)[0] == "accepted_bad"
    assert judge(Case(spec, "x", "", text, must_fail=False), tmp_path)[0] == "accepted"
    # an error that names the file and the key is good; a crash is not
    assert judge(Case(spec, "x", "", text + "\nzz: 1\n", must_fail=True), tmp_path)[0] == "error"
    assert judge(Case(spec, "x", "", "name: [\n", must_fail=True), tmp_path)[0] == "error"
