"""The Slurm backend: each group of trials with equal resources becomes one job array
(submitit map_array), one array task per trial.

Several GPUs per trial. By default the trial's one task gets all its GPUs on one node
and starts a rank per GPU itself (train.data_parallel, train/distributed.py). With
backend.slurm.nodes > 1 (or tasks_per_node > 0) the array task is a job of nodes x
tasks_per_node tasks, one rank and one GPU each; task 0 keeps the bookkeeping and leads,
the others follow it (train/distributed.py: lead, follow).

Time limits and preemption. Slurm sends SIGUSR2 `signal_delay` seconds before a
task's time limit; the task (TrialJob) then checkpoints at the end of the step it is
in (train/stop.py), rewrites its submission so that the rerun continues the same
attempt, and requeues itself: a trial that keeps making progress is requeued as often
as it needs (a requeue that made no progress since the last one ends the task with an
error instead). SIGTERM (scancel, `scontrol requeue`, preemption) also checkpoints
first; if Slurm requeues the task it continues the same attempt, if the task left the
queue the launcher records it and the next round resumes it from the checkpoint. No
path deletes a checkpoint: a resume never restarts from zero. train.checkpoint_minutes
bounds what a SIGKILL can lose.

Job states come from `squeue` (which works without Slurm accounting): a task is over
when it has left the queue; its result is read from submitit's result file, never with
job.result(), which can wait forever when sacct is unavailable. Each task's job id is
in the manifest, so a launch after a launcher died adopts the tasks still queued or
running instead of submitting them again.
"""
from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit

from ..config import ConfigError
from ..sweep.spec import SlurmOptions
from ..sweep.trial import Trial
from .launcher import Executor
from .layout import Layout
from .state import REQUEUED, read_manifest, record_death, update_manifest

LIVE = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
        "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT")


class NoProgress(RuntimeError):
    """Requeued twice at the same step: more time limits would not help."""


class TrialJob(submitit.helpers.Checkpointable):
    """What one array task runs."""

    def __call__(self, trial_json: dict, root: str, max_attempts: int, count_attempt: bool = True) -> dict:
        from ..train.stop import Interrupted, StopRequest, stop_on
        from .worker import run_trial
        stop = StopRequest()
        stop_on(stop, {signal.SIGUSR2: ("the Slurm time limit is near (SIGUSR2)", True),
                       signal.SIGTERM: ("SIGTERM (scancel, requeue or preemption)", False)})
        trial = Trial.from_json(trial_json)
        ranks = cluster_ranks()
        if ranks:                             # each rank trains on its own task's CPUs
            import dataclasses
            import torch
            cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
            torch.set_num_threads(cpus)
            trial = dataclasses.replace(trial, resources=dataclasses.replace(trial.resources, cpus=float(cpus)))
        if ranks and ranks.rank > 0:          # a follower: trains what task 0 trains, writes nothing
            from ..train.distributed import follow
            return {"trial_id": trial.id, "status": "follower", "rank": ranks.rank, "trained": follow(stop)}
        try:
            work = lambda: run_trial(trial, root, max_attempts, count_attempt=count_attempt, stop=stop)
            if ranks:
                from ..train.distributed import lead
                return lead(work)
            return work()
        except Interrupted as e:
            env = submitit.JobEnvironment()
            resume = self.checkpoint(trial_json, root, max_attempts, count_attempt)
            with submitit.core.utils.temporary_save_path(env.paths.submitted_pickle) as tmp:
                resume.dump(tmp)          # a rerun of this task continues the same attempt
            if e.requeue:
                made_progress(Layout(Path(root), trial.sweep), trial.id)
                subprocess.check_call(["scontrol", "requeue", env.job_id], timeout=60)
            sys.exit(-1)                  # no result file: the task is not over

    def checkpoint(self, trial_json: dict, root: str, max_attempts: int, count_attempt: bool = True):
        # train() checkpoints when asked; a requeue is the same attempt.
        return submitit.helpers.DelayedSubmission(self, trial_json, root, max_attempts, False)


def cluster_ranks():
    """With several tasks per trial (backend.slurm.tasks_per_node / nodes): export
    RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT (the first node of the job) from
    Slurm's variables and join the process group; None for a one-task trial."""
    env = submitit.JobEnvironment()
    if env.num_tasks <= 1:
        return None
    from ..train.distributed import init_cluster_ranks
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return init_cluster_ranks()


def made_progress(layout: Layout, tid: str) -> None:
    """Raise NoProgress when this requeue and the one before stopped at the same step."""
    stops = [h.get("step") for h in read_manifest(layout).get(tid, {}).get("history", [])
             if h.get("status") == REQUEUED]
    if len(stops) >= 2 and stops[-1] == stops[-2]:
        raise NoProgress(f"trial {tid} reached its time limit twice at step {stops[-1]} without progress; "
                         "give it more time (backend.slurm.time or --time)")


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
        # the warning before the time limit: 90 s, or a quarter of a short limit
        p = dict(timeout_min=o.timeout_min, slurm_array_parallelism=o.array_parallelism,
                 cpus_per_task=o.cpus or max(1, int(-(-r.cpus // 1))), name=f"ebt-{trial.sweep}",
                 slurm_signal_delay_s=int(max(10, min(90, o.timeout_min * 60 // 4))))
        nodes, k = o.ranks(gpus)
        if k:                     # one task per rank: ranks = nodes x k, one GPU each
            p.update(nodes=nodes, tasks_per_node=k,
                     cpus_per_task=o.cpus or max(1, math.ceil(r.cpus / (nodes * k))))   # the trial's CPUs, shared
            if gpus:
                p["gpus_per_node"] = k
        elif gpus:
            p["gpus_per_node"] = gpus
        for key in ("partition", "mem", "account", "qos", "constraint"):
            if getattr(o, key):
                p[f"slurm_{key}"] = getattr(o, key)
        return p

    def submit(self, trials: list[Trial], root: Path, max_attempts: int) -> list[tuple[Trial, str, str, str]]:
        """Submit job arrays; returns (trial, job id, result file, stderr file) and
        records each task's job id in the manifest (for adoption by a later launch)."""
        layout = Layout(root, trials[0].sweep)
        groups: dict[tuple, list[Trial]] = {}
        for t in trials:
            groups.setdefault(tuple(sorted(self.parameters(t).items())), []).append(t)
        jobs = []
        for params, group in groups.items():
            ex = submitit.AutoExecutor(folder=layout.state / "logs" / "slurm" / "%j", cluster="slurm")
            ex.update_parameters(**dict(params))
            try:
                js = ex.map_array(TrialJob(), [t.to_json() for t in group], [str(root)] * len(group),
                                  [max_attempts] * len(group))
            except Exception as e:
                raise ConfigError(f"Slurm did not accept the jobs: {_last_line(e)}; check --partition, "
                                  "--account, --time and backend.slurm in the spec (`sinfo` lists the "
                                  "partitions; is slurmctld up? bash scripts/slurm-up.sh)") from e
            for t, j in zip(group, js):
                jobs.append((t, j.job_id, str(j.paths.result_pickle), str(j.paths.stderr)))
                try:
                    update_manifest(layout, t.id, lambda r, j=j: r.update(
                        slurm_job=j.job_id, slurm_result=str(j.paths.result_pickle),
                        slurm_stderr=str(j.paths.stderr)))
                except OSError as e:        # only adoption by a later launch is lost
                    print(f"warning: could not record slurm job {j.job_id} of trial {t.id}: {e}",
                          file=sys.stderr, flush=True)
        return jobs

    def adoptable(self, trials: list[Trial], root: Path) -> list[tuple[Trial, str, str, str]]:
        """Tasks an earlier launch submitted that are still queued or running."""
        layout = Layout(root, trials[0].sweep)
        manifest = read_manifest(layout)
        known = [(t, manifest[t.id]) for t in trials if manifest.get(t.id, {}).get("slurm_job")]
        if not known:
            return []
        states = squeue_states([r["slurm_job"] for _, r in known]) or {}
        return [(t, r["slurm_job"], r.get("slurm_result", ""), r.get("slurm_stderr", ""))
                for t, r in known if states.get(r["slurm_job"]) in LIVE]

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        layout = Layout(root, trials[0].sweep)
        adopted = self.adoptable(trials, root)
        if adopted:
            print(f"adopting {len(adopted)} Slurm task(s) still queued or running from an earlier launch: "
                  f"{', '.join(j for _, j, _, _ in adopted[:10])}", flush=True)
        mine = {t.id for t, *_ in adopted}
        rest = [t for t in trials if t.id not in mine]
        jobs = adopted + (self.submit(rest, root, max_attempts) if rest else [])
        waiting = {jid: (t, res, err) for t, jid, res, err in jobs}
        failures = 0
        while waiting:
            time.sleep(self.poll)
            states = squeue_states(list(waiting))
            if states is None:
                failures += 1
                if failures >= self.max_squeue_failures:
                    for jid, (t, _, _) in waiting.items():
                        record_death(layout, t.id, f"squeue kept failing; lost track of slurm job {jid}")
                    raise ConfigError("squeue keeps failing; is slurmctld up? (bash scripts/slurm-up.sh)")
                continue
            failures = 0
            for jid in [j for j in waiting if j not in states]:
                t, res, err = waiting.pop(jid)
                collect(layout, t, jid, Path(res), err)


def collect(layout: Layout, t: Trial, job_id: str, result: Path, stderr: str) -> None:
    """A task left the queue: record how it ended unless its rows say so already."""
    if not result.exists():
        record_death(layout, t.id, f"slurm job {job_id} left the queue without a result "
                                   f"(cancelled, timed out or node failure; see {stderr})")
        return
    try:
        with open(result, "rb") as f:
            outcome, value = pickle.load(f)
    except Exception as e:
        record_death(layout, t.id, f"slurm job {job_id}: unreadable result ({type(e).__name__})")
        return
    if outcome != "success":
        record_death(layout, t.id, f"slurm job {job_id} raised: {str(value).strip().splitlines()[-1][:300]}")


def _last_line(e: Exception) -> str:
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
