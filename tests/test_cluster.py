"""Where Dask work runs: ``--scheduler``, then ``DASK_SCHEDULER_ADDRESS``, else a LocalCluster of processes."""
from __future__ import annotations

import logging
import os

import pytest

from fnet_dist.core.errors import InputError
from fnet_dist.core.cluster import SCHEDULER_ENV, dask_client, scheduler_address


def test_scheduler_address_precedence(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert scheduler_address(None) is None
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://from-env:8786")
    assert scheduler_address(None) == "tcp://from-env:8786"
    assert scheduler_address("tcp://given:8786") == "tcp://given:8786"
    monkeypatch.setenv(SCHEDULER_ENV, "")
    assert scheduler_address(None) is None


def test_env_scheduler_is_used_and_left_running(monkeypatch, dask_cluster_address, caplog):
    monkeypatch.setenv(SCHEDULER_ENV, dask_cluster_address)
    with caplog.at_level(logging.INFO, logger="fnet_dist.core.cluster"):
        with dask_client() as client:
            assert client.scheduler.address == dask_cluster_address
            assert len(client.scheduler_info()["workers"]) == 2
            assert client.submit(sum, [1, 2, 3]).result() == 6
    assert client.status == "closed"
    assert f"connected to Dask scheduler {dask_cluster_address} (dashboard" in caplog.text
    with dask_client(dask_cluster_address) as again:  # the remote cluster outlived the first client
        assert len(again.scheduler_info()["workers"]) == 2


def test_without_address_a_local_cluster_of_processes_is_started_and_closed(monkeypatch, caplog):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with caplog.at_level(logging.INFO, logger="fnet_dist.core.cluster"):
        with dask_client(n_workers=2) as client:
            cluster = client.cluster
            pids = set(client.run(os.getpid).values())
            threads = {w["nthreads"] for w in client.scheduler_info()["workers"].values()}
            link = client.dashboard_link
    assert len(pids) == 2 and os.getpid() not in pids
    assert threads == {1}
    assert link.startswith("http://") and f"(dashboard {link})" in caplog.text
    assert "started LocalCluster of 2 worker processes" in caplog.text
    assert cluster.status.name == "closed"


def test_unreachable_scheduler_is_a_clear_error():
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:1' .*"
                                             r"check --scheduler, the config's dask.scheduler or \$DASK_SCHEDULER_ADDRESS"):
            with dask_client("tcp://127.0.0.1:1"):
                pass


def test_the_local_dashboard_listens_on_loopback_unless_configured(monkeypatch):
    import psutil

    monkeypatch.delenv(SCHEDULER_ENV, raising=False)

    def listening() -> set[str]:
        """Addresses this process listens on (the scheduler and its dashboard run in it)."""
        return {c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}

    with dask_client(n_workers=1) as client:
        port = int(client.dashboard_link.split(":")[2].split("/")[0])
        bound = {c.laddr.ip for c in psutil.Process().net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert bound == {"127.0.0.1"} and listening() == {"127.0.0.1"}
    with dask_client(n_workers=1, dashboard_address=":0") as client:  # configured wider, on purpose
        assert "0.0.0.0" in listening() or "::" in listening()
