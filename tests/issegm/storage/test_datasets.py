"""Dataset registry: label maps against cityscapesscripts and the spec's SYNTHIA table; list reading."""
import os

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels

from issegm.storage.datasets import get_dataset, list_path, read_list
from issegm.errors import DataError
from issegm.benchmark.toy import write_cityscapes, write_gta
from issegm.benchmark.layouts import write_list

# Spec section 4, typed here independently of the module's table.
SPEC_SYNTHIA = {0: 255, 1: 9, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 12, 9: 7, 10: 10, 11: 15, 12: 14,
                13: 255, 14: 255, 15: 6, 16: 255, 17: 11, 18: 255, 19: 13, 20: 255, 21: 3, 22: 255}
SPEC_CS16 = ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
             'vegetation', 'sky', 'person', 'rider', 'car', 'bus', 'motorcycle', 'bicycle']


def test_cityscapes_maps_equal_cityscapesscripts():
    for name in ('cityscapes', 'gta'):
        info = get_dataset(name)
        assert info.num_classes == 19
        seen = 0
        for lab in cs_labels:
            if lab.id < 0:
                continue
            seen += 1
            expected = 255 if lab.trainId in (-1, 255) else lab.trainId
            assert info.label2train[lab.id] == expected, (name, lab.name)
            assert tuple(info.palette.reshape(256, 3)[lab.id]) == lab.color
            if expected != 255:
                assert info.train2label[expected] == lab.id
                assert info.class_names[expected] == lab.name
        assert seen == 34  # the 35 labels minus license plate (id -1)
        assert (info.label2train[34:] == 255).all()
        assert info.valid_label_ids == sorted(l.id for l in cs_labels if 0 <= l.trainId < 255)


def test_cityscapes16_mapping():
    info = get_dataset('cityscapes16')
    assert info.class_names == SPEC_CS16
    by_name = {l.name: l.id for l in cs_labels}
    for tid, name in enumerate(SPEC_CS16):
        assert info.label2train[by_name[name]] == tid
        assert info.train2label[tid] == by_name[name]
    for name in ('terrain', 'truck', 'train', 'unlabeled', 'parking'):
        assert info.label2train[by_name[name]] == 255
    assert (info.label2train != 255).sum() == 16


def test_synthia_table_equals_spec():
    info = get_dataset('synthia')
    assert info.num_classes == 16
    for sid, tid in SPEC_SYNTHIA.items():
        assert info.label2train[sid] == tid, sid
    assert (info.label2train[23:] == 255).all()
    # Predictions are saved as SYNTHIA ids: the round trip gives back the train id.
    for tid in range(16):
        assert info.label2train[info.train2label[tid]] == tid
    assert info.max_shape == (760, 1280)


def test_ignore_round_trip_and_shapes():
    for name in ('gta', 'synthia', 'cityscapes', 'cityscapes16'):
        info = get_dataset(name)
        assert info.label2train.dtype == np.uint8 and info.label2train.shape == (256,)
        assert info.train2label.dtype == np.uint8 and info.palette.shape == (768,)
        # A train id without a class (255 included) is saved as label id 0, which reads back as ignore.
        assert info.train2label[255] == 0 and info.label2train[0] == 255
        assert info.ignore_label == 255
    assert get_dataset('gta').max_shape == (1052, 1914)
    assert get_dataset('gta').max_shape_st_source == (1024, 2048)
    assert get_dataset('cityscapes').max_shape == (1024, 2048)


def test_registry_returns_copies():
    a = get_dataset('cityscapes')
    a.label2train[7] = 3
    assert get_dataset('cityscapes').label2train[7] == 0
    with pytest.raises(DataError, match='unknown dataset'):
        get_dataset('kitti')


def test_list_path():
    assert list_path('gta', 'train') == 'issegm/data_list/gta/train.lst'


def test_read_list_reports_every_missing_file_at_once(tmp_path):
    """11.6: the count and the first three, with their lines, in one line."""
    root = tmp_path / 'cs'
    img = np.zeros((4, 8, 3), np.uint8)
    lab = np.zeros((4, 8), np.uint8)
    e1 = write_cityscapes(str(root), 'train', 'aachen', '000000_000019', img, lab)
    missing_label = (e1[0], 'gtFine/missing_labelIds.png')
    extra = [('leftImg8bit/x%d.png' % i, 'y%d.png' % i) for i in range(3)]
    lst = write_list(str(tmp_path / 'train.lst'), [e1, missing_label] + extra)
    with pytest.raises(DataError) as err:
        read_list(lst, str(root))
    msg = str(err.value)
    assert '\n' not in msg and msg.startswith(lst + ': 7 file(s) not found: ')
    assert 'missing_labelIds.png (line 2)' in msg and 'x0.png (line 3)' in msg and 'y0.png (line 3)' in msg
    assert 'x1.png' not in msg and msg.endswith('and 4 more; check --data-root and the list file')


def test_read_list_names_a_latin1_list_and_a_missing_label_column(tmp_path):
    lst = tmp_path / 'l.lst'
    lst.write_bytes('images/caf\xe9.png\tlabels/a.png\n'.encode('latin-1'))
    with pytest.raises(DataError, match='is not UTF-8 text'):
        read_list(str(lst), str(tmp_path))
    lst.write_text('images/a.png\n')
    with pytest.raises(DataError, match=r'l.lst line 1: no label after the image'):
        read_list(str(lst), str(tmp_path), check_exists=False, need_labels=True)


def test_read_list_parses(tmp_path):
    root = tmp_path / 'cs'
    img = np.zeros((4, 8, 3), np.uint8)
    e1 = write_cityscapes(str(root), 'val', 'lindau', '000000_000019', img, np.zeros((4, 8), np.uint8))
    lst = tmp_path / 'val.lst'
    lst.write_text('%s\t%s\n\n%s\n' % (e1[0], e1[1], e1[0]))
    assert read_list(str(lst), str(root)) == [e1, (e1[0], None)]
    # Unchecked: paths are returned as written, nothing is looked up.
    lst.write_text('a.png\tb.png\n')
    assert read_list(str(lst), str(root), check_exists=False) == [('a.png', 'b.png')]
    # Pseudo-label lists: labels used as-is (label_root=None), images under the data root.
    lst.write_text('%s\t%s\n' % (e1[0], str(root / e1[1])))
    assert read_list(str(lst), str(root), label_root=None) == [(e1[0], str(root / e1[1]))]
    lst.write_text('a\tb\tc\n')
    with pytest.raises(DataError, match='line 1'):
        read_list(str(lst), check_exists=False)
    with pytest.raises(DataError, match='cannot read list file'):
        read_list(str(tmp_path / 'nope.lst'))


def test_read_list_reports_missing_image_with_line(tmp_path):
    root = tmp_path / 'gta'
    img, lab = np.zeros((4, 8, 3), np.uint8), np.full((4, 8), 7, np.uint8)
    entries = [write_gta(str(root), k, img, lab) for k in (1, 2, 3)]
    os.remove(str(root / entries[2][0]))
    lst = write_list(str(tmp_path / 'gta.lst'), entries)
    with pytest.raises(DataError) as err:
        read_list(lst, str(root))
    msg = str(err.value)
    assert 'gta.lst: 1 file(s) not found' in msg and 'images/00003.png (line 3)' in msg
    # Blank lines still count: the number is the line in the file a user opens.
    with open(lst, 'w') as f:
        f.write('\n%s\t%s\n\n%s\t%s\n' % (entries[0] + entries[2]))
    with pytest.raises(DataError, match=r'00003.png \(line 4\)'):
        read_list(lst, str(root))


@pytest.mark.parametrize('text', ['', '\n\n', '   \n\t\n'])
def test_empty_list_is_an_error(tmp_path, text):
    lst = tmp_path / 'empty.lst'
    lst.write_text(text)
    with pytest.raises(DataError, match='empty.lst has no entries'):
        read_list(str(lst), str(tmp_path), check_exists=False)


def test_malformed_lines_are_errors_naming_the_line(tmp_path):
    root = tmp_path / 'cs'
    img, lab = np.zeros((4, 8, 3), np.uint8), np.full((4, 8), 7, np.uint8)
    good = write_cityscapes(str(root), 'train', 'aachen', '000000_000019', img, lab)
    lst = tmp_path / 'bad.lst'
    # Too many fields (e.g. an extra column from a spreadsheet).
    lst.write_text('%s\t%s\n%s\t%s\textra\n' % (good + good))
    with pytest.raises(DataError, match=r'bad.lst line 2: expected "image<TAB>label", got 3'):
        read_list(str(lst), str(root))
    # Spaces instead of a tab: named as such, not as a missing file.
    lst.write_text('%s\t%s\n%s %s\n' % (good + good))
    with pytest.raises(DataError, match=r'bad.lst line 2: expected a TAB between image and label, found spaces'):
        read_list(str(lst), str(root))


def test_line_without_image_is_an_error(tmp_path):
    root = tmp_path / 'cs'
    img, lab = np.zeros((4, 8, 3), np.uint8), np.full((4, 8), 7, np.uint8)
    good = write_cityscapes(str(root), 'train', 'aachen', '000000_000019', img, lab)
    lst = tmp_path / 'bad.lst'
    lst.write_text('\t%s\n' % good[1])
    with pytest.raises(DataError, match='bad.lst line 1'):
        read_list(str(lst), str(root))


def test_dataset_for_model_checks_the_class_count():
    from issegm.storage.datasets import dataset_for_model
    assert dataset_for_model('cityscapes16', 'cityscapes_rna-a1_cls16_s8', 16).num_classes == 16
    with pytest.raises(DataError) as exc:
        dataset_for_model('synthia', 'gta_rna-a1_cls19_s8', 19)
    assert 'gta_rna-a1_cls19_s8 predicts 19 classes but dataset synthia has 16' in str(exc.value)
    with pytest.raises(DataError, match="unknown dataset 'kitti'"):
        dataset_for_model('kitti', 'gta_rna-a1_cls19_s8', 19)


def test_a_list_separated_by_spaces_asks_for_a_tab_but_a_path_with_a_space_is_kept(tmp_path):
    (tmp_path / 'a b.png').write_bytes(b'x')
    (tmp_path / 'c.png').write_bytes(b'x')
    lst = tmp_path / 'spaces.lst'
    lst.write_text('a b.png\nc.png c.png\n')
    with pytest.raises(DataError, match=r'spaces.lst line 2: expected a TAB between image and label, found spaces'):
        read_list(str(lst), str(tmp_path))
    lst.write_text('a b.png\tc.png\n')
    assert read_list(str(lst), str(tmp_path)) == [('a b.png', 'c.png')]


def test_check_content_is_one_line_with_the_count_and_duplicates_are_counted(tmp_path):
    from PIL import Image
    from issegm.storage.datasets import check_content, count_duplicates
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(str(tmp_path / 'im.png'))
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(str(tmp_path / 'ok.png'))
    Image.fromarray(np.zeros((4, 6), np.uint16)).save(str(tmp_path / 'wide.png'))
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(str(tmp_path / 'rgb.png'))
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(str(tmp_path / 'tall.png'))
    items = [('im.png', 'ok.png'), ('im.png', 'wide.png'), ('im.png', 'rgb.png'), ('im.png', 'tall.png'),
             ('im.png', 'tall.png')]
    check_content('x.lst', items[:1], str(tmp_path))
    check_content('x.lst', items, str(tmp_path), labels=False)   # labels never read: not checked
    with pytest.raises(DataError) as err:
        check_content('x.lst', items, str(tmp_path))
    line = str(err.value)
    assert '\n' not in line and line.startswith('x.lst: 4 file(s) fail the content check: ')
    assert 'wide.png: 16-bit label' in line and 'rgb.png: a colour label' in line and line.endswith('and 1 more')
    assert count_duplicates(items) == (4, 'im.png') and count_duplicates(items[:1]) == (0, None)
