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


class Snapshots(MemorySink):
    """Records the rows' statuses at every flush (what a reader of the file sees)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def flush(self):
        self.seen.append([(r.kind, r.status) for r in self.rows])


def test_rows_say_running_until_the_trial_ends(tiny_cfg):
    sink = Snapshots()
    train(tiny_cfg(), sink)
    mid = sink.seen[0]                                    # the file after the first evaluation
    assert mid and all(s == "running" for _, s in mid)
    assert {s for _, s in sink.seen[-1][:-1]} == {"running"} and sink.seen[-1][-1] == ("final", "ok")
    assert {r.status for r in sink.rows} == {"ok"}        # closed: every row says how it ended
    # a trial still running can be looked at: its last evaluation is selectable
    rows = [r for r in sink.rows if r.kind != "final"]
    for r in rows:
        r.status = "running"
    sel = select_points(Table(rows_to_table(rows).to_pandas(), "<mid-run>", ()), select="last")
    assert sel.n_trials == 1 and sel.points.iloc[0]["kind"] == "eval"


def test_a_failed_trial_s_rows_say_failed(tiny_cfg):
    sink = MemorySink()
    s = train(tiny_cfg(train={"fail_at_step": 7}), sink)
    assert s.status == "failed" and {r.status for r in sink.rows} == {"failed"}
