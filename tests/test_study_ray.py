"""The Ray backend: the same numbers as the local pool; refusals before anything is written (Ray missing,
an unreachable or wrong address, GPUs the cluster lacks); a cancelled cell records "interrupted".

One Ray session (2 CPUs, no GPU) serves the module; the sweeps find it and use it, so they do not start
(or stop) Ray themselves. Tests that need Ray skip where it is not installed."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

import pandas as pd
import pytest

import modelcollapse as mc
from modelcollapse.cli import main
from modelcollapse.config import SpecError
from modelcollapse.study import build
from modelcollapse.study.backends import BackendError, check_address
from modelcollapse.study.runner import sweep

TINY = ["replicates=4", "generations=6", "metric_samples=200", "heldout_size=100"]
GRID = ["train_size=10,40"]
QUIET = {"progress": False, "cell_reports": False, "report": False}


def _study(seeds: str = "0,1"):
    return build("gaussian", grid=GRID, seeds=seeds, sets=TINY)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=True,
                 logging_level="ERROR")
    yield ray
    ray.shutdown()


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["cell", "replicate", "generation"]).reset_index(drop=True)


def test_ray_gives_the_local_numbers(ray_session, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert sweep(_study(), local, workers=2, **QUIET).ok
    outcome = sweep(_study(), remote, backend="ray", workers=2, **QUIET)
    assert outcome.ok and len(outcome.completed) == 4
    index = json.loads((remote / "study.json").read_text())
    assert index["backend"] == "ray" and {e["status"] for e in index["cells"]} == {"completed"}
    a, b = _sorted(mc.load_results(local)), _sorted(mc.load_results(remote))
    assert len(a) == 4 * 4 * 7
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert ray_session.is_initialized()  # a session the sweep found is left running


def test_a_cancelled_cell_records_interrupted(ray_session, tmp_path):
    """What Ctrl-C does to a running Ray cell: KeyboardInterrupt in the task, "interrupted" in its manifest."""
    from modelcollapse.study.backends import RayBackend

    cell = build("gaussian", sets=["replicates=50", "generations=100000", "metric_samples=200", "heldout_size=100",
                                   "checkpoint_every=1000"]).cells[0]
    backend = RayBackend(workers=2)
    assert not backend.started and backend.slots == 2
    path = tmp_path / "cell"
    handle = backend.submit({"name": cell.name, "path": str(path), "spec": cell.spec.model_dump(mode="json"),
                             "threads": 1, "report": False}, cores=1)
    deadline, seen = time.monotonic() + 30, []
    while not seen and time.monotonic() < deadline:  # running: it reported a generation
        seen = backend.progress()
        time.sleep(0.1)
    assert seen and seen[0][0] == cell.name
    backend.stop([handle])
    assert backend.result(handle)["status"] == "interrupted"
    assert json.loads((path / "manifest.json").read_text())["status"] == "interrupted"


def test_an_unreachable_address_fails_fast_and_writes_nothing(ray_session, tmp_path, capsys):
    out = tmp_path / "study"
    t0 = time.perf_counter()
    code = main(["sweep", "gaussian", "--grid", GRID[0], "--seeds", "0,1", "--backend", "ray",
                 "--address", "127.0.0.1:1", "--out", str(out), "-q"])
    assert time.perf_counter() - t0 < 10
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--address '127.0.0.1:1': cannot reach a Ray cluster there" in err and "ray start --head" in err


def _server(answer: bytes) -> tuple[socket.socket, int]:
    """A TCP server on a free port that answers every connection with ``answer`` (a web server, say)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_an_address_that_is_no_ray_cluster_is_refused():
    srv, port = _server(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    try:
        with pytest.raises(BackendError, match="something answers there, but not a Ray cluster"):
            check_address(f"127.0.0.1:{port}")
    finally:
        srv.close()
    srv, port = _server(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an HTTP/2 SETTINGS frame: gRPC, as Ray's GCS
    try:
        check_address(f"127.0.0.1:{port}")
    finally:
        srv.close()
    with pytest.raises(BackendError, match="expected HOST:PORT"):
        check_address("head-node")


def test_without_ray_the_message_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    out = tmp_path / "study"
    with pytest.raises(SpecError, match=r"--backend ray needs Ray, which is not installed: pip install 'ray"):
        sweep(_study(), out, backend="ray", **QUIET)
    assert not out.exists()
    assert main(["sweep", "gaussian", "--seeds", "0", "--backend", "ray", "--out", str(out), "-q"]) == 2
    assert "pip install" in capsys.readouterr().err and not out.exists()


def test_gpus_the_cluster_lacks_are_refused_before_running(ray_session, tmp_path):
    out = tmp_path / "study"
    with pytest.raises(BackendError, match=r"--gpus-per-cell 1: no node has that many GPUs .*wait for them forever"):
        sweep(_study(), out, backend="ray", gpus_per_cell=1, **QUIET)
    assert not out.exists()
    assert ray_session.is_initialized()


def test_ray_options_need_the_ray_backend(tmp_path):
    with pytest.raises(SpecError, match="go with --backend ray"):
        sweep(_study(), tmp_path / "study", gpus_per_cell=1, **QUIET)
    assert not (tmp_path / "study").exists()
