"""The environment a child script of this repository runs with."""
import os

__all__ = ['REPO', 'child_env']

#: The repository root: the scripts import ``issegm`` and ``util`` from here.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(*paths, threads=None):
    """``os.environ`` with the repository (then ``paths``) first on ``PYTHONPATH``.

    Parameters
    ----------
    *paths : str
        Folders put on ``PYTHONPATH`` after the repository, before the caller's entries.
    threads : int, optional
        Sets ``OMP_NUM_THREADS`` unless the caller's environment sets it
        (tests and trials run several children on two cores).

    Returns
    -------
    dict
        A copy of the environment for the child.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join((REPO,) + paths + ((env['PYTHONPATH'],) if env.get('PYTHONPATH') else ()))
    if threads is not None:
        env.setdefault('OMP_NUM_THREADS', str(threads))
    return env
