"""One local Ray cluster for the whole test session (imported by tests/conftest.py), shared
by the Ray tests of every module: starting one costs seconds on this machine, and each
module leaves nothing running on it (Serve is shut down, actors are killed or finish).

    def test_x(ray_cluster): ...   # ray.init done: 2 CPUs, the data-node resource

2 CPUs, a 500 MB object store, no dashboard, and the custom resource ``lorag_data`` of
the node that holds the data directory (RaySettings.data_resource). Shut down at the end
of the session.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=500_000_000, include_dashboard=False,
             resources={"lorag_data": 1}, log_to_driver=False)
    yield ray
    ray.shutdown()
