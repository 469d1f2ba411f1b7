"""Live progress of `train` (a bar on a terminal, plain lines elsewhere) and the
status rows carry while a trial runs."""
import io
import re

from ebt_scaling.fit.io import Table, select_points
from ebt_scaling.results.store import MemorySink, TeeSink, rows_to_table
from ebt_scaling.train import train
from ebt_scaling.train.live import LiveProgress


def test_plain_lines_off_a_terminal(tiny_cfg):
    cfg = tiny_cfg()
    out = io.StringIO()
    train(cfg, TeeSink(MemorySink(), LiveProgress(cfg.total_steps, out=out, tty=False, every=0)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 // 5 + 2           # a train row every 5 steps, one eval, one final
    assert lines[0].startswith("step 5/20 (25%)  loss ")
    assert "tok/s" in lines[0] and "eta" not in lines[0]          # no rate before a second row
    assert re.search(r"step 10/20 \(50%\)  loss \d+\.\d+  val \d+\.\d+  .*tok/s  elapsed 0:00:\d\d  "
                     r"eta 0:00:\d\d  \(eval\)", lines[2]), lines[2]
    assert lines[-1].startswith("step 20/20 (100%)") and lines[-1].endswith("(final)")


def test_plain_lines_are_rate_limited(tiny_cfg):
    cfg = tiny_cfg()
    out = io.StringIO()
    train(cfg, TeeSink(MemorySink(), LiveProgress(cfg.total_steps, out=out, tty=False, every=3600)))
    kinds = [line.rsplit("(", 1)[-1] for line in out.getvalue().splitlines()]
    assert len(kinds) == 3 and kinds[1:] == ["eval)", "final)"]     # the first row, then evaluations


def test_bar_on_a_terminal(tiny_cfg):
    cfg = tiny_cfg()
    out = io.StringIO()
    train(cfg, TeeSink(MemorySink(), LiveProgress(cfg.total_steps, out=out, tty=True)))
    text = out.getvalue()
    assert "20/20" in text and "val " in text and "tok/s" in text and "step/s" in text


def test_rows_say_running_until_the_final_row(tiny_cfg):
    sink = MemorySink()
    train(tiny_cfg(), sink)
    assert {r.status for r in sink.rows if r.kind in ("train", "eval")} == {"running"}
    assert sink.rows[-1].kind == "final" and sink.rows[-1].status == "ok"
    # a trial still running can be looked at: its last evaluation is selectable
    frame = rows_to_table(sink.rows[:-1]).to_pandas()
    sel = select_points(Table(frame, "<mid-run>", ()), select="last")
    assert sel.n_trials == 1 and sel.points.iloc[0]["kind"] == "eval"
