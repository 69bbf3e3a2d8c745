"""Where Dask work runs: a scheduler address, ``DASK_SCHEDULER_ADDRESS``, or a LocalCluster of processes.

``dask_client(scheduler)`` is a context manager yielding a ``distributed.Client``; a LocalCluster it
started is closed on exit, a remote scheduler is only disconnected; an unreachable one is an ``InputError``.
A LocalCluster's scheduler, workers and dashboard listen on the loopback interface only (``dask.dashboard_address``
opens the dashboard wider, on purpose): a Dask scheduler runs whatever code a client sends it.
``gather(client, collections, desc)``: compute them on the cluster with a progress bar over completed futures.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from .config import LOOPBACK_DASHBOARD
from .errors import InputError

__all__ = ["SCHEDULER_ENV", "dask_client", "gather", "scheduler_address"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
log = logging.getLogger(__name__)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: ``scheduler`` if given, else ``$DASK_SCHEDULER_ADDRESS``, else None (local)."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    dashboard_address: str | None = LOOPBACK_DASHBOARD,
) -> Iterator["distributed.Client"]:  # noqa: F821
    """Connect to ``scheduler`` (or the env var), else start a LocalCluster of worker processes.

    The local cluster has ``n_workers`` processes (default: Dask's CPU count, which honours the cgroup CPU
    limit of a container and the affinity mask, unlike ``os.cpu_count()``) of
    ``threads_per_worker`` threads each, so BLAS inside each task runs on one thread; its dashboard listens at
    ``dashboard_address`` (default: loopback, any free port; None: no dashboard).
    """
    from distributed import Client, LocalCluster

    address = scheduler_address(scheduler)
    if address:
        try:
            client = Client(address)
        except OSError as exc:
            raise InputError(
                f"cannot reach the Dask scheduler at {address!r} ({exc}); check --scheduler, the config's "
                f"dask.scheduler or ${SCHEDULER_ENV}, or leave them unset to start a local cluster"
            ) from None
        log.info("connected to Dask scheduler %s (dashboard %s)", address, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    from dask.system import CPU_COUNT

    workers = n_workers or max(1, CPU_COUNT)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        memory_limit=memory_limit,
        host="127.0.0.1",
        dashboard_address=dashboard_address,
    )
    client = Client(cluster)
    log.info("started LocalCluster of %d worker processes (dashboard %s)", workers, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def gather(client, collections: list, desc: str) -> list:
    """Compute ``collections`` on ``client``'s cluster; results in their order, with a progress bar (stderr) that
    advances as each future completes."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(list(collections))
    position = {future.key: i for i, future in enumerate(futures)}
    results: list = [None] * len(futures)
    with tqdm(total=len(futures), desc=desc, unit="task", disable=not futures) as bar:
        for future, result in as_completed(futures, with_results=True):
            results[position[future.key]] = result
            bar.update(1)
    return results
