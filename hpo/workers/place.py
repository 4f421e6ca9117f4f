"""Who a worker is and where it runs: its index, and the place every trial it runs records.

**The index.** A worker's index offsets its sampler's seed, so two workers with one index
propose the same points. ``hpo worker`` without ``--worker-index`` claims the next index of the
study's counter in the database (:func:`storage.claim_worker_indexes`), and ``hpo launch``
claims a block for the workers it starts, so workers started by hand, by ``docker compose
--scale``, by Slurm or by Kubernetes never share one. A scheduler's own task number (Slurm's
array task id, a Kubernetes completion index) is recorded, not used as the index: a task that
is re-queued or restarted would start its sampler again from the same seed and propose its
first points a second time, while a claim gives each start a fresh index.

**The place.** Each trial records, as short system attributes (``hpo:host``, ``hpo:pid``, ...),
where it ran: host, process id, worker index, the devices the process sees
(``CUDA_VISIBLE_DEVICES``), the device it trained on, and the Slurm job and array task or the
Kubernetes completion index where there are some. They are written when the trial starts, so a
RUNNING trial shows where it runs, and a re-queued copy starts without them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

import storage

PLACE_PREFIX = "hpo:"
"""Prefix of the place's trial system attributes (like ``hpo:retries_spent``)."""
HOST_ATTR = "hpo:host"
PID_ATTR = "hpo:pid"
WORKER_INDEX_ATTR = "hpo:worker"
VISIBLE_ATTR = "hpo:visible"
"""``CUDA_VISIBLE_DEVICES`` as the process got it; ``unset`` when it was not set."""
DEVICE_ATTR = "hpo:device"
"""The device the trial trained on: ``cpu`` or ``cuda:N`` (N counts the visible devices)."""
SLURM_JOB_ATTR = "hpo:slurm_job"
"""The Slurm job: the array's job id for an array task, else the job id."""
SLURM_TASK_ATTR = "hpo:slurm_task"
"""The Slurm array task id."""
K8S_INDEX_ATTR = "hpo:k8s_index"
"""A Kubernetes Indexed Job's completion index."""
PLACE_ATTRS = (
    HOST_ATTR,
    PID_ATTR,
    WORKER_INDEX_ATTR,
    VISIBLE_ATTR,
    DEVICE_ATTR,
    SLURM_JOB_ATTR,
    SLURM_TASK_ATTR,
    K8S_INDEX_ATTR,
)
"""Every system attribute of a trial's place; a re-queued copy drops them."""
UNSET = "unset"


def claim_worker_index(engine: Any, study_name: str, guard: storage.OutageGuard) -> int:
    """The next worker index of the study, none ever given before (waits out an outage)."""

    def claim() -> int:
        with storage.session_scope(engine) as session:
            return storage.claim_worker_indexes(session, study_name).start

    return guard.call(claim)


def claim_worker_index_block(url: str, study_name: str, n: int) -> range:
    """``n`` worker indexes of the study none of whose workers got them (``hpo launch``)."""
    with storage.session_scope(storage.open_storage(url)) as session:
        return storage.claim_worker_indexes(session, study_name, n)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


@dataclass(frozen=True)
class WorkerPlace:
    """Where one worker process runs (the same for every trial it runs)."""

    host: str
    pid: int
    worker_index: int
    visible: str
    """``CUDA_VISIBLE_DEVICES``, or :data:`UNSET`."""
    device: str
    """``cpu`` or ``cuda:N``."""
    slurm_job: str | None = None
    slurm_task: int | None = None
    k8s_index: int | None = None

    @classmethod
    def here(
        cls, worker_index: int, device: str, environ: Mapping[str, str] | None = None
    ) -> WorkerPlace:
        """This process's place, read from its environment (Slurm's and Kubernetes' too)."""
        env = os.environ if environ is None else environ
        job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID") or None
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            worker_index=worker_index,
            visible=env.get("CUDA_VISIBLE_DEVICES", UNSET),
            device=device,
            slurm_job=job,
            slurm_task=_int_or_none(env.get("SLURM_ARRAY_TASK_ID")),
            k8s_index=_int_or_none(env.get("JOB_COMPLETION_INDEX")),
        )

    def system_attrs(self) -> dict[str, str | int]:
        """The trial system attributes of this place: short scalars, those that are set."""
        attrs: dict[str, str | int | None] = {
            HOST_ATTR: self.host,
            PID_ATTR: self.pid,
            WORKER_INDEX_ATTR: self.worker_index,
            VISIBLE_ATTR: self.visible,
            DEVICE_ATTR: self.device,
            SLURM_JOB_ATTR: self.slurm_job,
            SLURM_TASK_ATTR: self.slurm_task,
            K8S_INDEX_ATTR: self.k8s_index,
        }
        return {key: value for key, value in attrs.items() if value is not None}

    def describe(self) -> str:
        """One line for the worker's log: ``host vm pid 12 device cpu visible 0 slurm 7_3``."""
        text = f"host {self.host} pid {self.pid} device {self.device} visible {self.visible!r}"
        if self.slurm_job is not None:
            task = "" if self.slurm_task is None else f"_{self.slurm_task}"
            text += f" slurm job {self.slurm_job}{task}"
        if self.k8s_index is not None:
            text += f" completion index {self.k8s_index}"
        return text


def place_recorder(
    rdb: optuna.storages.BaseStorage, study_id: int, place: WorkerPlace
) -> Callable[[optuna.Trial], None]:
    """A function that writes ``place`` into a running trial's system attributes.

    Optuna 5's ``Trial`` has no public setter of system attributes; the storage's
    ``set_trial_system_attr`` takes the trial's storage id, looked up by number with the
    storage's public getter.
    """
    attrs = place.system_attrs()

    def record(trial: optuna.Trial) -> None:
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        for key, value in attrs.items():
            rdb.set_trial_system_attr(trial_id, key, value)

    return record


def place_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The place a trial recorded, without the prefix (``{"host": ..., "device": ...}``)."""
    return {
        key.removeprefix(PLACE_PREFIX): trial.system_attrs[key]
        for key in PLACE_ATTRS
        if key in trial.system_attrs
    }
