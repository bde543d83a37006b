"""Several processes and machines on MXNet's parameter server (ps-lite).

The worker side of a launched job: its KVStore, rank, image shards, sums,
gathers and its immediate exit on failure (:mod:`~issegm.cluster.worker`); and
the launcher that starts scheduler, servers and workers locally or over ssh
(:mod:`~issegm.cluster.launcher`, run as ``python -m issegm.launch``).
"""
__all__ = ['worker', 'launcher']
