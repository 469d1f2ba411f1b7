"""The Ray backend: trials as Ray Tune trials, packed by their resources.

By default Ray starts an embedded single-machine cluster (no set-up, no dashboard, a
small object store); `address` joins an existing one. Each Tune trial runs
`run_trial` (which claims, trains, records) and reports its outcome with
ray.tune.report. Workers are reused from trial to trial (reuse_actors): the imports and
process start are paid once per slot, not per trial (a tiny trial's launch overhead fell
from 4.5 s to 1.4 s; benchmarks/RESULTS.md), and a worker that died is replaced for the
next trial, whose attempt resumes from its checkpoint. Tune never retries or restores here: Tuner.restore cannot grow a
grid, so the launcher keeps its own record of what is done and runs rounds.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..sweep.trial import Trial
from ..config import ConfigError
from .launcher import Executor
from .layout import Layout
from .state import record_death


def _trainable(config, payload=None, root="", max_attempts=3):
    from ray import tune
    from .worker import run_trial
    trial = Trial.from_json(payload[config["trial_id"]])
    out = run_trial(trial, root, max_attempts)
    tune.report({k: v for k, v in out.items() if isinstance(v, (int, float, str))})


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str = "", object_store_mb: int = 128, trials: list[Trial] | None = None,
                 verbose: int = 0, reuse_actors: bool = True):
        self.address = address
        self.reuse_actors = reuse_actors
        self.object_store_mb = object_store_mb
        self.verbose = verbose
        self.started = False
        cpus = os.cpu_count() or 1
        if trials:   # for the progress estimate: how many trials fit at once on this machine
            need = max(t.resources.cpus for t in trials)
            self.parallelism = max(1, int(cpus // need))

    def _init(self) -> None:
        import ray
        if ray.is_initialized():
            return
        kw = dict(include_dashboard=False, configure_logging=True, logging_level="WARNING",
                  log_to_driver=self.verbose > 0, ignore_reinit_error=True)
        if self.address:
            reachable(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(object_store_memory=self.object_store_mb * 1024 * 1024, **kw)
        except Exception as e:      # one message, not Ray's traceback (exit 2 through the CLI)
            lines = [x for x in str(e).strip().splitlines() if x.strip()]
            where = f"the Ray cluster at {self.address!r}" if self.address else "an embedded Ray cluster"
            raise ConfigError(f"could not start or join {where}: {type(e).__name__}: "
                              f"{(lines[0] if lines else '')[:300]}; check --address / backend.ray.address "
                              "(`ray status` on the head node), or use --backend local") from e
        self.started = True

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
        self._init()
        from ray import tune
        payload = {t.id: t.to_json() for t in trials}
        resources = {t.id: {"cpu": t.resources.cpus, "gpu": t.resources.gpus} for t in trials}
        trainable = tune.with_parameters(_trainable, payload=payload, root=str(root), max_attempts=max_attempts)
        trainable = tune.with_resources(trainable, lambda config: resources[config["trial_id"]])
        layout = Layout(root, trials[0].sweep)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial_id": tune.grid_search([t.id for t in trials])},
            tune_config=tune.TuneConfig(reuse_actors=self.reuse_actors, trial_dirname_creator=lambda tr: tr.config["trial_id"],
                                        trial_name_creator=lambda tr: tr.config["trial_id"]),
            run_config=tune.RunConfig(name=f"round-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                                      storage_path=str(layout.state / "ray"), verbose=self.verbose,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        grid = tuner.fit()
        for res in grid:   # a trial whose worker died (killed, out of memory) ends with an error here
            if res.error is not None:
                tid = res.config.get("trial_id") if res.config else None
                if tid:
                    record_death(layout, tid, f"Ray worker failed: {type(res.error).__name__}: "
                                              f"{str(res.error).splitlines()[0][:300]}")

    def close(self) -> None:
        if self.started:
            import ray
            ray.shutdown()
            self.started = False


def reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at a host:port address (ray.init would retry for
    minutes); "auto" and addresses without a port are left to Ray."""
    import socket
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: nothing answers at {host}:{port} ({e.strerror or e}); start the "
                          "cluster (`ray start --head`), fix --address / backend.ray.address, or leave it "
                          "out for an embedded cluster") from None
