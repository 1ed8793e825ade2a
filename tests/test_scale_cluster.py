"""The scale runner on a two-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head and a worker node,
each a raylet of its own), the worker node removed mid-job: the job still ends with every input exactly once."""

import pytest

from test_scale import TINY, by_id, noise_files, output_rows, write_manifest

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "distilwhisper[scale]"')


def replica_nodes() -> list[str]:
    """The nodes the live replicas run on (from the GCS's actor table, as test_scale's replica_pids)."""
    from ray._private import state

    return [a["Address"]["NodeID"] for a in state.actors().values() if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]]


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="error")
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()  # this test's two raylets only


def test_losing_a_node_mid_job_still_gives_every_row_once(two_nodes, random_checkpoint, tmp_path):
    from distilwhisper import TranscribeOptions
    from distilwhisper.scale import ScaleOptions, transcribe_dataset

    cluster, worker = two_nodes
    files = noise_files(tmp_path, 16)
    model = random_checkpoint(0, tokenizer="base")
    # Two replicas of one CPU each on two one-CPU nodes: one of them is on the worker node.
    options = ScaleOptions(str(tmp_path / "out"), str(model), TranscribeOptions(**TINY, batch_size=2), replicas=(2, 2),
                           part_seconds=0)  # fmt: skip
    lost = []

    def lose_the_worker(summary):
        if not lost:
            lost.append((summary.done, replica_nodes()))
            cluster.remove_node(worker)

    summary = transcribe_dataset(str(write_manifest(tmp_path, files)), options, lose_the_worker)
    (done, nodes), = lost
    assert done < len(files), "the node was lost after the job had finished"
    assert worker.node_id in nodes, "no replica was on the node that was lost"
    assert len(ray.nodes()) == 2 and sum(node["Alive"] for node in ray.nodes()) == 1
    rows = by_id(output_rows(tmp_path / "out"))
    assert sorted(rows) == sorted(map(str, files)) and summary.missing == summary.failed == 0
