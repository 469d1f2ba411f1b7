"""The Slurm backend: each group of trials with equal resources becomes one job array
(submitit map_array), one array task per trial.

On a time-out or preemption submitit signals the task, calls `TrialJob.checkpoint`
and requeues it; train() has been saving `<checkpoint_dir>/last.pt` every
train.checkpoint_every steps, so the requeued task resumes there (without counting a
new attempt). Job states come from `squeue` (which works without Slurm accounting):
a task is over when it has left the queue; its result is read from submitit's result
file, never with job.result(), which can wait forever when sacct is unavailable.
"""
from __future__ import annotations

import pickle
import subprocess
import time
from pathlib import Path

import submitit

from ..sweep.spec import SlurmOptions
from ..sweep.trial import Trial
from .base import Executor, Layout, record_death


class TrialJob(submitit.helpers.Checkpointable):
    """What one array task runs. A Checkpointable: submitit requeues it on time-out/preemption."""

    def __call__(self, trial_json: dict, root: str, max_attempts: int, count_attempt: bool = True) -> dict:
        from .base import run_trial
        return run_trial(Trial.from_json(trial_json), root, max_attempts, count_attempt=count_attempt)

    def checkpoint(self, trial_json: dict, root: str, max_attempts: int, count_attempt: bool = True):
        # The model state is on disk already (train.checkpoint_every); a requeue is the same attempt.
        return submitit.helpers.DelayedSubmission(self, trial_json, root, max_attempts, False)


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """{array task id: state} of the tasks still in the queue; None when squeue fails."""
    masters = sorted({j.split("_")[0] for j in job_ids})
    try:
        p = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(masters)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        # squeue says "Invalid job id specified" once every listed job has left the queue
        return {} if "Invalid job id" in p.stderr else None
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, opts: SlurmOptions, poll: float = 2.0, max_squeue_failures: int = 30):
        self.opts = opts
        self.poll = poll
        self.max_squeue_failures = max_squeue_failures
        self.parallelism = max(1, opts.array_parallelism)

    def parameters(self, trial: Trial) -> dict:
        o, r = self.opts, trial.resources
        gpus = o.gpus if o.gpus >= 0 else int(-(-r.gpus // 1))
        p = dict(timeout_min=o.timeout_min, slurm_array_parallelism=o.array_parallelism,
                 cpus_per_task=o.cpus or max(1, int(-(-r.cpus // 1))), name=f"ebt-{trial.sweep}",
                 slurm_signal_delay_s=90)
        if gpus:
            p["gpus_per_node"] = gpus
        for key in ("partition", "mem", "account", "qos", "constraint"):
            if getattr(o, key):
                p[f"slurm_{key}"] = getattr(o, key)
        return p

    def submit(self, trials: list[Trial], root: Path, max_attempts: int) -> list[tuple[Trial, object]]:
        layout = Layout(root, trials[0].sweep)
        groups: dict[tuple, list[Trial]] = {}
        for t in trials:
            groups.setdefault(tuple(sorted(self.parameters(t).items())), []).append(t)
        jobs = []
        for params, group in groups.items():
            ex = submitit.AutoExecutor(folder=layout.state / "logs" / "slurm" / "%j", cluster="slurm")
            ex.update_parameters(**dict(params))
            js = ex.map_array(TrialJob(), [t.to_json() for t in group], [str(root)] * len(group),
                              [max_attempts] * len(group))
            jobs += list(zip(group, js))
        return jobs

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        layout = Layout(root, trials[0].sweep)
        jobs = self.submit(trials, root, max_attempts)
        waiting = dict((j.job_id, (t, j)) for t, j in jobs)
        failures = 0
        while waiting:
            time.sleep(self.poll)
            states = squeue_states(list(waiting))
            if states is None:
                failures += 1
                if failures >= self.max_squeue_failures:
                    for jid, (t, _) in waiting.items():
                        record_death(layout, t.id, f"squeue kept failing; lost track of slurm job {jid}")
                    raise RuntimeError("squeue keeps failing; is slurmctld up? (bash scripts/slurm-up.sh)")
                continue
            failures = 0
            for jid in [j for j in waiting if j not in states]:
                t, job = waiting.pop(jid)
                self._collect(layout, t, job)

    @staticmethod
    def _collect(layout: Layout, t: Trial, job) -> None:
        path = Path(job.paths.result_pickle)
        if not path.exists():
            record_death(layout, t.id, f"slurm job {job.job_id} left the queue without a result "
                                       f"(cancelled, timed out or node failure; see {job.paths.stderr})")
            return
        try:
            with open(path, "rb") as f:
                outcome, value = pickle.load(f)
        except Exception as e:
            record_death(layout, t.id, f"slurm job {job.job_id}: unreadable result ({type(e).__name__})")
            return
        if outcome != "success":
            record_death(layout, t.id, f"slurm job {job.job_id} raised: {str(value).strip().splitlines()[-1][:300]}")
