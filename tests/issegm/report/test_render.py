"""The run report (issegm/report/render.py, python -m issegm.report) on hand-made records."""
import base64
import io
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from issegm.report import health, render
from issegm.report.__main__ import main

CLASSES = ['road', 'building', 'car']


def round_record(folder, r, kept, with_training=True):
    health.update(folder, kind='round', round=r, classes=CLASSES,
                  confidence={'mean_top_prob': 0.7 + r / 10., 'mean_entropy': 0.5 - r / 10.,
                              'mean_entropy_normalised': 0.4, 'pixels': 10},
                  pseudo_labels={'thresholds': [0.5, 0.6, 0.7], 'kept_share': kept,
                                 'label_distribution': [0.5, 0.3, 0.2], 'class_share': [0.1, 0.06, 0.04],
                                 'predicted_share': [0.5, 0.3, 0.2], 'source_share': [0.4, 0.4, 0.2],
                                 'agreement_with_previous': None if r == 0 else 0.9,
                                 'scores': {'mean_iou': 0.3, 'class_iou': [0.5, 0.3, 0.1]}})
    if with_training:
        for epoch in (1, 2):
            health.update(folder, training={'%04d' % epoch: {'epoch': epoch, 'loss': 1.0 / epoch, 'lr': 0.01,
                                                             'images': 8, 'seconds': 1.0}})


def images_of(page):
    """The PNG images of every <img> of a page (each must be a decodable data URI)."""
    tags = re.findall(r'<img [^>]*>', page)
    out = []
    for tag in tags:
        uri = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        assert uri, tag[:80]
        with Image.open(io.BytesIO(base64.b64decode(uri.group(1)))) as im:
            im.load()
            out.append(im.size)
    return tags, out


def test_a_self_training_output_gives_a_self_contained_page_and_markdown(tmp_path):
    out = str(tmp_path)
    round_record(os.path.join(out, '0'), 0, 0.2)
    round_record(os.path.join(out, '1'), 1, 0.05)  # the kept share collapsed
    html_path, md_path = render.write_report(out)
    page = open(html_path).read()
    tags, sizes = images_of(page)
    assert len(tags) == 5 and all(w > 50 and h > 50 for w, h in sizes)
    assert 'src="http' not in page and '<script' not in page
    assert 'round 1: only 5.0% of the target pixels are pseudo-labelled' in page
    md = open(md_path).read()
    pngs = re.findall(r'\]\((report/[^)]+\.png)\)', md)
    assert len(pngs) == 5 and all(os.path.getsize(os.path.join(out, p)) > 0 for p in pngs)
    assert '## Which round to keep' in md


def test_a_running_output_and_single_records(tmp_path):
    running = str(tmp_path / 'running')
    health.update(os.path.join(running, '0'), kind='round', round=0, confidence={'mean_top_prob': 0.6})
    tags, _ = images_of(open(render.write_report(running)[0]).read())
    assert len(tags) == 1  # confidence by round only
    source = str(tmp_path / 'source')
    health.update(source, kind='source_training', training={'0001': {'epoch': 1, 'loss': 2.0, 'lr': 0.1}})
    assert '1 epochs; last: loss 2.000' in open(render.write_report(source)[1]).read()
    evaluation = str(tmp_path / 'eval')
    health.update(evaluation, kind='evaluation', classes=CLASSES, evaluations={'m_ep-0001': {
        'predicted_share': [0.5, 0.5, 0], 'confidence': {'mean_top_prob': 0.8, 'mean_entropy': 0.3},
        'scores': {'mean_iou': 0.25, 'class_iou': [0.5, 0.25, 0.0]}}})
    page = open(render.write_report(evaluation)[0]).read()
    assert '| m_ep-0001 | 25.0 |' in open(os.path.join(evaluation, 'report.md')).read()
    assert len(images_of(page)[0]) == 1  # IoU per class


def test_the_command_line(tmp_path, capsys):
    out = str(tmp_path)
    assert main([str(tmp_path / 'nothing')]) == 2
    for r in range(3):
        round_record(os.path.join(out, str(r)), r, 0.2, with_training=False)
    assert main([out, '--select']) == 0
    printed = capsys.readouterr().out
    assert printed.startswith('keep the weights that entered round ') and 'confidence' in printed
    assert main([out]) == 0 and os.path.exists(os.path.join(out, 'report.html'))


def test_the_page_in_a_headless_browser(tmp_path):
    browser = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip('no headless browser installed (chromium, chromium-browser or google-chrome); '
                    'the data URIs are checked by the other tests')
    out = str(tmp_path)
    round_record(os.path.join(out, '0'), 0, 0.2)
    html_path, _ = render.write_report(out)
    page = open(html_path, encoding='utf-8').read()
    expected = page.count('<img')
    # A copy of the page that writes, once loaded, which images the browser decoded (naturalWidth > 0).
    probe = str(tmp_path / 'probe.html')
    with open(probe, 'w', encoding='utf-8') as f:
        f.write(page.replace('</body>', '<script>window.addEventListener("load", function () {'
                             'document.body.setAttribute("data-loaded", Array.prototype.map.call(document.images,'
                             ' function (i) { return i.complete && i.naturalWidth > 0 ? "1" : "0"; }).join(""));'
                             '});</script></body>'))
    dom = subprocess.run([browser, '--headless', '--disable-gpu', '--no-sandbox', '--virtual-time-budget=5000',
                          '--dump-dom', 'file://' + probe], check=True, timeout=90, capture_output=True,
                         text=True).stdout
    loaded = re.search(r'data-loaded="([01]*)"', dom)
    assert expected > 0 and loaded is not None, dom[-500:]
    assert loaded.group(1) == '1' * expected  # every picture of the page decoded
    shot = str(tmp_path / 'shot.png')
    subprocess.run([browser, '--headless', '--disable-gpu', '--no-sandbox', '--screenshot=%s' % shot,
                    '--window-size=1100,2000', 'file://' + html_path], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with Image.open(shot) as im:
        colours = im.convert('L').getextrema()
    assert colours[0] < colours[1]  # something was drawn
