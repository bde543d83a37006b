"""Where the files of a self-training round live, named as the reference names them.

A round's outputs are under ``{output}/{r}/`` (:class:`RoundPaths`); the
statistics under ``{output}/stats/`` are shared by the rounds, and the target
training list is also written where the reference writes it
(:func:`training_list_path`, shared by the runs of one working folder).
"""
import os
import shutil

__all__ = ['MARKER', 'RoundPaths', 'training_list_path']

MARKER = 'pseudo_label.done.json'


class RoundPaths(object):
    """Output folders of round ``r`` under ``{output}/{r}/``, named as the reference.

    Parameters
    ----------
    output : str
        The run's output folder.
    r : int
        The round.
    """

    def __init__(self, output, r):
        self.output = output
        self.round_dir = os.path.join(output, str(r))
        results = os.path.join(self.round_dir, 'results')
        st = os.path.join(self.round_dir, 'self_train')
        self.nplabelIds = os.path.join(results, 'nplabelIds')
        self.npcolor = os.path.join(results, 'npcolor')
        self.pseudo_labelIds = os.path.join(st, 'pseudo_labelIds')
        self.pseudo_color = os.path.join(st, 'pseudo_color')
        self.rwlabelIds = os.path.join(st, 'rwlabelIds')
        self.rwcolor = os.path.join(st, 'rwcolor')
        self.splabelIds = os.path.join(st, 'splabelIds')
        self.spcolor = os.path.join(st, 'spcolor')
        # Per-round (the reference shares one {output}/probmap) so that a
        # killed round can resume from its own maps.
        self.probmap = os.path.join(self.round_dir, 'probmap')
        self.stats = os.path.join(output, 'stats')
        self.marker = os.path.join(self.round_dir, MARKER)
        self.thresholds_used = os.path.join(self.round_dir, 'pseudo_label_thresholds.npy')
        self.source_selected = os.path.join(self.round_dir, 'source_selected.lst')
        # The round's own copy of the target training list: training reads this one, so runs
        # in one working folder never train on each other's pseudo-labels.
        self.training_list = os.path.join(self.round_dir, 'target_training.lst')

    def checkpoint_prefix(self, model):
        """``{output}/{r}/{model}_ep``: the round's checkpoints are ``{prefix}-NNNN.params``.

        Parameters
        ----------
        model : str
            The model's name.

        Returns
        -------
        str
            The prefix.
        """
        return os.path.join(self.round_dir, '%s_ep' % model)

    def has_pseudo_label_work(self):
        """Whether the phase has written any per-image output (a failed start leaves none)."""
        return os.path.exists(self.marker) or any(
            os.path.isdir(f) and any(True for _ in os.scandir(f)) for f in (self.nplabelIds, self.pseudo_labelIds))

    def discard_pseudo_labels(self):
        """Remove this round's pseudo-label phase outputs (``--restart``)."""
        for folder in (os.path.dirname(self.nplabelIds), os.path.dirname(self.pseudo_labelIds), self.probmap):
            shutil.rmtree(folder, ignore_errors=True)
        for path in (self.marker, self.thresholds_used, self.training_list):
            if os.path.exists(path):
                os.remove(path)

    @staticmethod
    def png(folder, name):
        return os.path.join(folder, name + '.png')


def training_list_path(dataset_tgt, split_tgt, gpus):
    """``issegm/data_list/{dataset_tgt}/{split_tgt}_training_gpu{gpus}.lst`` (relative to the cwd).

    Parameters
    ----------
    dataset_tgt : str
        The target dataset.
    split_tgt : str
        The target split.
    gpus : str
        The ``--gpus`` value, as written in the name.

    Returns
    -------
    str
        The path.
    """
    return os.path.join('issegm', 'data_list', dataset_tgt, '%s_training_gpu%s.lst' % (split_tgt, gpus))
