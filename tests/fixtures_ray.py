"""One local Ray cluster for the whole test session (imported by tests/conftest.py), shared
by the Ray tests of every module: starting one costs seconds on this machine, and each
module leaves nothing running on it (Serve is shut down, actors are killed or finish).

    def test_x(ray_cluster): ...   # ray.init done: 2 CPUs, the data-node resource

Started as ``lorag serve --ray`` starts a local one (lorag.cluster.runtime.connect): a
500 MB object store, no dashboard, the custom resource ``lorag_data`` of the node that
holds the data directory (RaySettings.data_resource), Serve's proxy checks patient with
a busy machine; here 2 CPUs. Shut down at the end of the session.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from lorag.app.settings import RaySettings
    from lorag.cluster.runtime import connect

    connect(RaySettings(), num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()
