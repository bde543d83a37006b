"""What lives on disk, and the guards around it.

The dataset registry, label tables and list files
(:mod:`~issegm.storage.datasets`); preparing the datasets' files
(:mod:`~issegm.storage.preparation`); the network's low-resolution maps between
the passes of a round (:mod:`~issegm.storage.probmaps`); where a round's files
live (:mod:`~issegm.storage.round_paths`); one run per folder, the settings
fingerprint and debris removal (:mod:`~issegm.storage.run_guard`).
"""
__all__ = ['datasets', 'preparation', 'probmaps', 'round_paths', 'run_guard']
