"""Header and tail checks find each kind of bad image or label file, once, by name."""
import numpy as np
import pytest
from PIL import Image

from util.file_check import check_image, check_label, check_pairs, summarize

W, H = 12, 8


def _rgb():
    return np.random.RandomState(0).randint(0, 256, (H, W, 3)).astype(np.uint8)


def _ids(h=H, w=W):
    return (np.arange(h * w).reshape(h, w) % 34).astype(np.uint8)


@pytest.fixture
def files(tmp_path):
    """A good image/label pair in PNG and JPEG, and one file of each bad kind."""
    paths = {name: str(tmp_path / name) for name in (
        'image.png', 'image.jpg', 'label.png', 'palette.png', 'label16.png', 'colour.png',
        'wide.png', 'text.png', 'empty.png', 'label.jpg')}
    Image.fromarray(_rgb()).save(paths['image.png'])
    Image.fromarray(_rgb()).save(paths['image.jpg'], quality=90)
    Image.fromarray(_ids()).save(paths['label.png'])
    pal = Image.fromarray(_ids(), 'L').convert('P')
    pal.save(paths['palette.png'])
    Image.fromarray(_ids().astype(np.uint16) * 300).save(paths['label16.png'])
    Image.fromarray(_rgb()).save(paths['colour.png'])
    Image.fromarray(_ids(H, W + 1)).save(paths['wide.png'])
    with open(paths['text.png'], 'w') as f:
        f.write('image\tlabel\n')
    open(paths['empty.png'], 'wb').close()
    Image.fromarray(_ids()).save(paths['label.jpg'])
    return paths


def _cut(src, dst, keep):
    with open(src, 'rb') as f:
        data = f.read()
    with open(dst, 'wb') as f:
        f.write(data[:keep])
    return len(data)


def test_good_png_and_jpeg_pairs_pass(files):
    assert check_image(files['image.png']) is None
    assert check_image(files['image.jpg']) is None
    assert check_label(files['label.png'], (W, H)) is None
    assert check_label(files['palette.png'], (W, H)) is None
    assert check_pairs([(files['image.png'], files['label.png']), (files['image.jpg'], files['palette.png']),
                        (files['image.jpg'], None)]) == []


@pytest.mark.parametrize('name, words', [
    ('label16.png', '16-bit'),
    ('colour.png', 'a colour label (mode RGB): use the *_labelIds.png / labels/ ids file'),
    ('wide.png', '13x8 (width x height) but its image is 12x8'),
    ('text.png', 'not an image'),
    ('empty.png', 'empty file'),
    ('label.jpg', 'JPEG'),
    ('missing.png', 'not found'),
])
def test_each_bad_label_gives_one_finding_naming_it(files, tmp_path, name, words):
    path = files.get(name, str(tmp_path / name))
    found = check_pairs([(files['image.png'], path)], threads=0)
    assert len(found) == 1
    assert found[0].startswith('label %s: ' % path) and words in found[0]
    assert check_label(path, (W, H)) == found[0]


def test_label_size_is_only_compared_when_the_image_size_is_known(files):
    assert check_label(files['wide.png']) is None
    assert 'its image is 12x8' in check_label(files['wide.png'], (W, H))


@pytest.mark.parametrize('name, words', [('text.png', 'not an image'), ('empty.png', 'empty file'),
                                         ('label16.png', 'clips at 255')])
def test_each_bad_image_gives_one_finding_naming_it(files, name, words):
    found = check_pairs([(files[name], None)], threads=0)
    assert len(found) == 1 and found[0].startswith('image %s: ' % files[name]) and words in found[0]


@pytest.mark.parametrize('src', ['image.png', 'image.jpg'])
def test_a_file_cut_anywhere_is_found(files, tmp_path, src):
    cut = str(tmp_path / ('cut.' + src.split('.')[1]))
    with open(files[src], 'rb') as f:
        data = f.read()
    pixels = data.find(b'IDAT' if src.endswith('png') else b'\xff\xda') + 16   # past the header
    assert 16 < pixels < len(data) - 16
    for keep in range(1, len(data)):
        _cut(files[src], cut, keep)
        found = check_pairs([(cut, None)], threads=0)
        assert len(found) == 1 and found[0].startswith('image %s: ' % cut), (keep, found)
        if keep > pixels:   # the header is whole: only the missing end tells
            assert 'truncated' in found[0], (keep, found)


def test_a_png_cut_exactly_before_iend_is_truncated(files, tmp_path):
    cut = str(tmp_path / 'cut.png')
    size = _cut(files['image.png'], cut, None)
    _cut(files['image.png'], cut, size - 12)
    assert check_image(cut).startswith('image %s: truncated PNG' % cut)
    assert check_label(cut).startswith('label %s: truncated PNG' % cut)


def test_jpeg_zero_padding_passes_but_a_zero_filled_cut_does_not(files, tmp_path):
    with open(files['image.jpg'], 'rb') as f:
        data = f.read()
    padded, filled = str(tmp_path / 'padded.jpg'), str(tmp_path / 'filled.jpg')
    with open(padded, 'wb') as f:
        f.write(data + b'\x00' * 300)
    with open(filled, 'wb') as f:
        f.write(data[:-40] + b'\x00' * 40)
    assert check_image(padded) is None
    assert 'truncated JPEG' in check_image(filled)


def test_check_pairs_keeps_list_order_and_image_before_label(files):
    pairs = [(files['empty.png'], files['colour.png']), (files['image.png'], files['label.png']),
             (files['text.png'], None), (files['image.jpg'], files['label16.png'])] * 5
    expected = ['image %s' % files['empty.png'], 'label %s' % files['colour.png'],
                'image %s' % files['text.png'], 'label %s' % files['label16.png']] * 5
    for threads in (None, 0, 3):
        found = check_pairs(pairs, threads=threads)
        assert [f.split(': ')[0] for f in found] == expected


def test_summarize_gives_the_count_and_the_first_few(files):
    found = check_pairs([(files['text.png'], files['colour.png']), (files['empty.png'], None)])
    line = summarize('gta/train.lst', found, shown=2)
    assert line.startswith('gta/train.lst: 3 file(s) fail the content check: image %s' % files['text.png'])
    assert line.endswith(' and 1 more') and files['colour.png'] in line and files['empty.png'] not in line
    assert summarize('gta/train.lst', []) == ''
