"""Dataset registry: label encodings, palettes, image sizes and list files.

Label images on disk hold *label ids* (Cityscapes ids for ``gta``,
``cityscapes`` and ``cityscapes16``; SYNTHIA ids for ``synthia``). Inside the
code everything works in *train ids* (0..C-1, 255 = ignore), obtained through
``DatasetInfo.label2train``; predictions go back to label ids through
``DatasetInfo.train2label`` and are coloured with ``DatasetInfo.palette``.

Choices (following the reference's ``evaluate.py`` / ``solve_ST.py`` meta):

* Cityscapes tables come from ``cityscapesscripts.helpers.labels``; the
  16-class mapping keeps the SYNTHIA-shared classes by name (docs/behaviour.md section 4).
* ``synthia`` predictions are saved as SYNTHIA ids with the SYNTHIA table's
  colours, as the reference does when evaluating on SYNTHIA (its
  ``labels_synthia`` table), so that they compare directly with SYNTHIA
  ground truth. In SYNTHIA -> Cityscapes self-training the *target* dataset is
  ``cityscapes16`` and pseudo-labels are Cityscapes ids.
* ``train2label`` maps every train id without a class (including 255) to
  label id 0 ('unlabeled' / 'void'), which ``label2train`` maps back to 255,
  so ignore survives a round trip (pseudo-labels rely on id 0 = ignore).
* ``max_shape`` is the dataset's own largest image (used by evaluation and
  source training). In self-training the reference uses 1024 x 2048 as the
  *source* max shape for GTA-5 (its images are resized to 1052 x 1914, but
  the code pins 1024 x 2048); that is ``max_shape_st_source``.
"""
import collections
import os

import numpy as np

from issegm.errors import DataError

__all__ = ['DatasetInfo', 'DataError', 'DATASETS', 'get_dataset', 'list_path', 'read_list',
           'IGNORE_LABEL', 'SYNTHIA_LABELS', 'CITYSCAPES16_CLASSES', 'sample_name',
           'save_prediction', 'report_missing', 'LabelAudit', 'target_dataset', 'check_content',
           'count_duplicates']

#: The train id of pixels that count for nothing (unlabelled, void, or not kept as pseudo-labels).
IGNORE_LABEL = 255

DatasetInfo = collections.namedtuple('DatasetInfo', [
    'name',                 # registry key
    'num_classes',          # number of train ids
    'class_names',          # names in train-id order
    'label2train',          # np.uint8[256]: label id -> train id (unknown -> 255)
    'train2label',          # np.uint8[256]: train id -> label id (no class -> 0)
    'valid_label_ids',      # sorted label ids that have a train id (evaluation)
    'palette',              # np.uint8[768]: colours indexed by label id
    'max_shape',            # (h, w) largest image, evaluation / source training
    'max_shape_st_source',  # (h, w) max shape when used as SOURCE in self-training
    'ignore_label',         # 255
    'label_ids',            # sorted label ids the encoding defines (others are unknown: ignored, reported)
])


# SYNTHIA (RAND-CITYSCAPES) ids: (name, id, train id, colour) -- docs/behaviour.md section 4,
# colours from the reference's labels_synthia table.
SYNTHIA_LABELS = [
    ('void', 0, 255, (0, 0, 0)),
    ('sky', 1, 9, (70, 130, 180)),
    ('building', 2, 2, (70, 70, 70)),
    ('road', 3, 0, (128, 64, 128)),
    ('sidewalk', 4, 1, (244, 35, 232)),
    ('fence', 5, 4, (64, 64, 128)),
    ('vegetation', 6, 8, (107, 142, 35)),
    ('pole', 7, 5, (153, 153, 153)),
    ('car', 8, 12, (0, 0, 142)),
    ('traffic sign', 9, 7, (220, 220, 0)),
    ('pedestrian', 10, 10, (220, 20, 60)),
    ('bicycle', 11, 15, (119, 11, 32)),
    ('motorcycle', 12, 14, (0, 0, 230)),
    ('parking-slot', 13, 255, (250, 170, 160)),
    ('road-work', 14, 255, (128, 64, 64)),
    ('traffic light', 15, 6, (250, 170, 30)),
    ('terrain', 16, 255, (152, 251, 152)),
    ('rider', 17, 11, (255, 0, 0)),
    ('truck', 18, 255, (0, 0, 70)),
    ('bus', 19, 13, (0, 60, 100)),
    ('train', 20, 255, (0, 80, 100)),
    ('wall', 21, 3, (102, 102, 156)),
    ('lanemarking', 22, 255, (102, 102, 156)),
]

# Cityscapes classes shared with SYNTHIA, in 16-class train-id order.
CITYSCAPES16_CLASSES = ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                        'traffic sign', 'vegetation', 'sky', 'person', 'rider', 'car', 'bus',
                        'motorcycle', 'bicycle']


def _tables(entries):
    """Build (label2train, train2label, class_names, valid ids, palette, label ids) from
    ``(name, label_id, train_id, colour)`` entries.

    As in the reference (``trainId2label`` built over the reversed list), the
    first label listed for a train id is the one a prediction is saved as.
    """
    label2train = np.full(256, IGNORE_LABEL, np.uint8)
    train2label = np.zeros(256, np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    names = {}
    ids = set()
    for name, lid, tid, colour in entries:
        if lid < 0 or lid > 255:
            continue
        ids.add(lid)
        palette[lid] = colour
        if tid < 0 or tid == IGNORE_LABEL:
            continue
        label2train[lid] = tid
        if tid not in names:
            names[tid] = name
            train2label[tid] = lid
    num_classes = len(names)
    assert sorted(names) == list(range(num_classes)), names
    class_names = [names[t] for t in range(num_classes)]
    valid = sorted(int(train2label[t]) for t in range(num_classes))
    return label2train, train2label, class_names, valid, palette.ravel(), sorted(ids)


def _cityscapes_entries(sixteen=False):
    from cityscapesscripts.helpers.labels import labels
    if not sixteen:
        return [(l.name, l.id, l.trainId, l.color) for l in labels]
    keep = {name: i for i, name in enumerate(CITYSCAPES16_CLASSES)}
    return [(l.name, l.id, keep.get(l.name, IGNORE_LABEL), l.color) for l in labels]


def _make(name, entries, max_shape, max_shape_st_source=None):
    l2t, t2l, names, valid, palette, ids = _tables(entries)
    max_shape = tuple(max_shape)
    return DatasetInfo(name=name, num_classes=len(names), class_names=names,
                       label2train=l2t, train2label=t2l, valid_label_ids=valid,
                       palette=palette, max_shape=max_shape,
                       max_shape_st_source=tuple(max_shape_st_source or max_shape),
                       ignore_label=IGNORE_LABEL, label_ids=ids)


def _build_registry():
    return {
        'gta': _make('gta', _cityscapes_entries(), (1052, 1914), (1024, 2048)),
        'synthia': _make('synthia', SYNTHIA_LABELS, (760, 1280)),
        'cityscapes': _make('cityscapes', _cityscapes_entries(), (1024, 2048)),
        'cityscapes16': _make('cityscapes16', _cityscapes_entries(sixteen=True), (1024, 2048)),
    }


DATASETS = _build_registry()


def get_dataset(name):
    """The :class:`DatasetInfo` of a registered dataset.

    Parameters
    ----------
    name : str
        gta, synthia, cityscapes or cityscapes16.

    Returns
    -------
    DatasetInfo
        Its tables, copied (editing them does not change the registry).

    Raises
    ------
    DataError
        For an unknown dataset (one line naming the known ones).
    """
    try:
        info = DATASETS[name]
    except KeyError:
        raise DataError('unknown dataset %r; known: %s' % (name, ', '.join(sorted(DATASETS))))
    # Copies, so that a caller editing a table cannot change the registry.
    return info._replace(label2train=info.label2train.copy(), train2label=info.train2label.copy(),
                         palette=info.palette.copy(), class_names=list(info.class_names),
                         valid_label_ids=list(info.valid_label_ids), label_ids=list(info.label_ids))


def dataset_for_model(name, model, classes):
    """The :class:`DatasetInfo` of ``name``, checked to have the ``classes`` of ``model``.

    Parameters
    ----------
    name : str
        The dataset.
    model : str
        The model's label, named in the message.
    classes : int
        The number of classes the model predicts.

    Returns
    -------
    DatasetInfo
        As :func:`get_dataset`.

    Raises
    ------
    DataError
        One line, for an unknown dataset or another class count.
    """
    info = get_dataset(name)
    if classes != info.num_classes:
        raise DataError('model %s predicts %d classes but dataset %s has %d; use %d-class weights with a '
                        '%d-class dataset (cityscapes16 for SYNTHIA models)'
                        % (model, classes, info.name, info.num_classes, classes, classes))
    return info


def target_dataset(dataset, dataset_tgt, classes):
    """Label tables of the target: SYNTHIA -> Cityscapes uses the 16-class Cityscapes mapping.

    The reference keys this on the (source, target) pair; the list files stay
    under ``--dataset-tgt``.

    Parameters
    ----------
    dataset : str
        The source dataset.
    dataset_tgt : str
        The target dataset (``--dataset-tgt``).
    classes : int
        The model's number of classes (16 also selects ``cityscapes16``).

    Returns
    -------
    DatasetInfo
        The target's tables.

    Raises
    ------
    ValueError
        When the target has another number of classes than the model.
    """
    name = dataset_tgt
    if dataset_tgt == 'cityscapes' and (dataset == 'synthia' or classes == 16):
        name = 'cityscapes16'
    info = get_dataset(name)
    if info.num_classes != classes:
        raise ValueError('the model has %d classes but the target %s has %d'
                         % (classes, name, info.num_classes))
    return info


class LabelAudit(object):
    """Label values outside the encoding, and label files that look like train ids or colours.

    Unknown label ids are ignored, as the reference ignores them (its tables
    map them to 255), but never silently: :meth:`check` notes them per file
    and :meth:`report` logs one summary warning for what is new (the files
    and the values). A file whose pixels are mostly in the void ids below the
    first class (Cityscapes ids 0-6) most likely holds train ids or a colour
    rendering; it gets a warning naming it and ``prepare_data.py``. Findings
    made in worker processes travel back as :meth:`check`'s return value and
    are added with :meth:`add`.

    Parameters
    ----------
    info : DatasetInfo
        The encoding the label files should use.
    """

    def __init__(self, info):
        self.info_name = info.name
        self.known = np.zeros(256, bool)
        self.known[info.label_ids] = True
        low = [i for i in range(min(info.valid_label_ids)) if info.label2train[i] == IGNORE_LABEL]
        # A single void id (SYNTHIA's 0, pseudo-labels' 0) says nothing; Cityscapes has seven.
        self.void_ids = low if len(low) > 1 else []
        self.unknown = {}      # path -> sorted unknown values
        self.suspect = []      # paths that look like train ids or colours
        self._reported = set()

    def inspect(self, path, raw):
        """Look at one label-id map without keeping the finding.

        Parameters
        ----------
        path : str
            The label file, named in the finding.
        raw : numpy.ndarray
            Its label-id map.

        Returns
        -------
        tuple or None
            ``(path, unknown_values, suspect)``, or None when nothing is wrong.
        """
        counts = np.bincount(np.asarray(raw, np.uint8).ravel(), minlength=256)
        unknown = tuple(int(v) for v in np.nonzero(counts * ~self.known)[0])
        suspect = False
        if self.void_ids:
            void = counts[self.void_ids]
            suspect = void.sum() > 0.5 * raw.size and void[1:].sum() > 0.1 * raw.size
        return (path, unknown, suspect) if unknown or suspect else None

    def add(self, finding):
        if finding is not None:
            path, unknown, suspect = finding
            if unknown:
                self.unknown[path] = unknown
            if suspect and path not in self.suspect:
                self.suspect.append(path)

    def check(self, path, raw):
        """Inspect one label-id map and keep the finding.

        Parameters
        ----------
        path : str
            The label file.
        raw : numpy.ndarray
            Its label-id map.

        Returns
        -------
        tuple or None
            The finding, as :meth:`inspect`.
        """
        finding = self.inspect(path, raw)
        self.add(finding)
        return finding

    def report(self, log):
        """Log one warning for each kind of finding not reported yet.

        Parameters
        ----------
        log : logging.Logger
            Where the warnings go.
        """
        new = [p for p in self.unknown if ('u', p) not in self._reported]
        if new:
            values = sorted(set(v for p in new for v in self.unknown[p]))
            shown = ', '.join('%s (%s)' % (p, ','.join(map(str, self.unknown[p][:5]))) for p in new[:3])
            log.warning('%d label file(s) hold values outside the %s label ids (%s), ignored as the reference '
                        'ignores them: %s%s', len(new), self.info_name, ', '.join(map(str, values[:10])), shown,
                        ' and %d more' % (len(new) - 3) if len(new) > 3 else '')
            self._reported.update(('u', p) for p in new)
        new = [p for p in self.suspect if ('s', p) not in self._reported]
        if new:
            log.warning('%d label file(s) look like train ids or colours, not %s label ids (most pixels are '
                        'void ids %d-%d): %s%s; make label-id files with issegm/prepare_data.py',
                        len(new), self.info_name, self.void_ids[0], self.void_ids[-1], ', '.join(new[:3]),
                        ' and %d more' % (len(new) - 3) if len(new) > 3 else '')
            self._reported.update(('s', p) for p in new)


def save_prediction(info, train_ids, ids_path, color_path):
    """Save a train-id map as a label-id PNG and a palette colour PNG.

    The colour file is written first and the label ids last, so the label-id
    file's presence means both are there (self-training resumes on it).

    Parameters
    ----------
    info : DatasetInfo
        The tables (``train2label``, ``palette``).
    train_ids : numpy.ndarray
        The (H, W) train-id map.
    ids_path : str
        The label-id PNG.
    color_path : str
        The colour PNG.

    Returns
    -------
    numpy.ndarray
        The label ids.
    """
    from util.image import save_png
    ids = info.train2label[train_ids]
    save_png(color_path, ids, info.palette)
    save_png(ids_path, ids)
    return ids


def sample_name(image_path):
    """Name of a sample's outputs: its image file name without the extension (reference)."""
    return os.path.splitext(os.path.basename(image_path))[0]


def list_path(dataset, split):
    """Path of the list file of ``dataset``/``split`` (relative to the working directory).

    Parameters
    ----------
    dataset : str
        The dataset.
    split : str
        The list's name (``{split}.lst``).

    Returns
    -------
    str
        ``issegm/data_list/{dataset}/{split}.lst``.
    """
    return os.path.join('issegm', 'data_list', dataset, '%s.lst' % split)


_SAME = object()


def report_missing(source, missing, hint='check --data-root and the list file'):
    """Raise one :class:`DataError` for every missing file at once: the count and the first few.

    Parameters
    ----------
    source : str
        What lists the files (named first in the message).
    missing : list of (str, str)
        ``(where, path)`` pairs, ``where`` a line reference such as ``line 12``
        (or '' when there is none). Nothing is raised when it is empty.
    hint : str
        Ends the message.

    Raises
    ------
    DataError
        When ``missing`` is not empty.
    """
    if not missing:
        return
    shown = ', '.join(('%s (%s)' % (path, where) if where else path) for where, path in missing[:3])
    more = ' and %d more' % (len(missing) - 3) if len(missing) > 3 else ''
    raise DataError('%s: %d file(s) not found: %s%s; %s' % (source, len(missing), shown, more, hint))


def read_list(path, data_root=None, check_exists=True, label_root=_SAME, need_labels=False,
              hint='check --data-root and the list file'):
    """Parse a list file of ``image<TAB>label`` lines (label optional).

    When ``check_exists``, every file is looked up before any work starts, and
    all missing ones are reported at once (:func:`report_missing`).

    Parameters
    ----------
    path : str
        The list file.
    data_root : str, optional
        Where the image paths (and by default the label paths) are looked up.
    check_exists : bool
        Look every file up.
    label_root : str or None, optional
        Where the label paths are looked up (default: ``data_root``); pass
        ``None`` for pseudo-label lists, whose label paths are used as-is.
    need_labels : bool
        Make an image-only line an error (source lists).
    hint : str
        Ends the missing-files message.

    Returns
    -------
    list of (str, str or None)
        ``(image, label_or_None)`` with the paths as written.

    Raises
    ------
    DataError
        One line, for an unreadable or empty list, a malformed line or missing files.
    """
    if label_root is _SAME:
        label_root = data_root
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError('list file %s is not UTF-8 text (%s); re-save it as UTF-8' % (path, exc.reason))
    except OSError as exc:
        raise DataError('cannot read list file %s: %s' % (path, exc.strerror or exc))
    items, missing = [], []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        # Split before stripping: a leading tab means a missing image, not an image-only line.
        fields = [f.strip() for f in line.split('\t')]
        if len(fields) > 2:
            raise DataError('%s line %d: expected "image<TAB>label", got %d tab-separated fields'
                            % (path, lineno, len(fields)))
        image = fields[0]
        if not image:
            raise DataError('%s line %d: no image path before the tab' % (path, lineno))
        if len(fields) == 1 and len(image.split()) == 2 and not _is_file(image, data_root):
            raise DataError('%s line %d: expected a TAB between image and label, found spaces (%r); '
                            'separate the two paths with one TAB' % (path, lineno, image))
        label = fields[1] if len(fields) == 2 and fields[1] else None
        if need_labels and label is None:
            raise DataError('%s line %d: no label after the image; this list needs "image<TAB>label" lines'
                            % (path, lineno))
        if check_exists:
            for rel, root in ((image, data_root), (label, label_root)):
                if rel is not None:
                    full = os.path.join(root, rel) if root else rel
                    if not os.path.isfile(full):
                        missing.append(('line %d' % lineno, full))
        items.append((image, label))
    if not items:
        raise DataError('list file %s has no entries' % path)
    report_missing(path, missing, hint)
    return items


def _is_file(rel, root):
    return os.path.isfile(os.path.join(root, rel) if root else rel)


def check_content(source, items, data_root, label_root=_SAME, labels=True, threads=None):
    """Check the content of every listed file cheaply (:func:`util.file_check.check_pairs`), before work.

    Parameters
    ----------
    source : str
        The list file, named in the message.
    items : list of (str, str or None)
        :func:`read_list`'s entries.
    data_root : str or None
        The root of the image paths (and of the label paths unless ``label_root``).
    label_root : str or None, optional
        The root of the label paths (default ``data_root``; None: as written).
    labels : bool
        Check the labels too (False where they are never read).
    threads : int, optional
        As :func:`util.file_check.check_pairs`.

    Raises
    ------
    DataError
        One line: how many files fail, the first three findings (16-bit or
        colour labels, a label of another size than its image, truncated
        PNG/JPEG files, unreadable files).
    """
    from util.file_check import check_pairs, summarize
    if label_root is _SAME:
        label_root = data_root

    def under(root, rel):
        return os.path.join(root, rel) if root else rel
    pairs = [(under(data_root, image), under(label_root, label) if labels and label is not None else None)
             for image, label in items]
    line = summarize(source, check_pairs(pairs, threads))
    if line:
        raise DataError(line)


def count_duplicates(items):
    """How many entries repeat an earlier entry's image.

    Parameters
    ----------
    items : list of (str, str or None)
        :func:`read_list`'s entries.

    Returns
    -------
    count : int
        The repeats.
    first : str or None
        The first repeated image.
    """
    seen, count, first = set(), 0, None
    for image, _ in items:
        if image in seen:
            count += 1
            first = first or image
        seen.add(image)
    return count, first
