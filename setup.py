"""CBST-MX: Class-Balanced Self-Training for segmentation domain adaptation, on MXNet 1.x.

MXNet ships as separate CPU and CUDA distributions that both provide the
``mxnet`` package, so an extra cannot *replace* one by the other. The CPU
build (``mxnet==1.9.1``) is the default; set ``CBST_MXNET=gpu`` when
installing the ``gpu`` extra (``CBST_MXNET=gpu pip install -e ".[gpu]"``), or
have a CUDA build installed already, and the CPU build is left out.
"""
import os

from setuptools import find_packages, setup

MXNET_CPU = 'mxnet==1.9.1'
MXNET_GPU = 'mxnet-cu112==1.9.1'


def _gpu_build_wanted():
    if os.environ.get('CBST_MXNET', '').lower() in ('gpu', 'cu112', 'cuda'):
        return True
    try:  # a CUDA build already installed: keep it
        from importlib import metadata
        return any((d.metadata['Name'] or '').lower().startswith('mxnet-cu')
                   for d in metadata.distributions())
    except Exception:
        return False


REQUIRES = [
    # MXNet 1.9 breaks on numpy >= 1.24 (np.bool etc.).
    'numpy>=1.21,<1.24',
    'scipy>=1.7,<1.16',
    'pillow>=9',
    # gluoncv requires opencv-python, the GUI build, whose cv2 needs the
    # system's libGL.so.1 and glib; the project wants the headless build.
    # Both install the one package cv2. Pinned to one release, their Python
    # files agree and only the binary differs: whichever pip installs last
    # (opencv-python with pip 23.2 and 26.3) owns it, so the install scripts
    # reinstall the headless one after (scripts/headless_cv2.sh).
    'opencv-python-headless==4.8.1.78',
    'opencv-python==4.8.1.78',
    'tqdm>=4.60',
    # Official Cityscapes label definitions and evaluation; its matplotlib
    # and contourpy would otherwise demand a newer numpy.
    'cityscapesscripts==2.3.0',
    'matplotlib>=3.5,<3.9',
    'contourpy<1.3',
    # ImageNet VGG16 of the FCN8s-VGG16 backbone (util.symbol.fcn8s);
    # 0.10.5.post0 is the last release; unlike 0.10.0 and older it does not
    # require autogluon.core, decord and tensorboardx. Its other requirements
    # (pandas, portalocker, yacs, autocfg, pyyaml, requests) are unpinned
    # there and resolve with numpy<1.24 (pandas 2.3.3 on Python 3.11).
    'gluoncv==0.10.5.post0',
]
if not _gpu_build_wanted():
    REQUIRES.insert(0, MXNET_CPU)

setup(
    name='cbst-mx',
    version='0.1.0',
    description='Class-Balanced Self-Training (CBST, ECCV 2018) for semantic segmentation '
                'domain adaptation on MXNet 1.x',
    long_description=open(os.path.join(os.path.dirname(__file__), 'README.md')).read()
    if os.path.exists(os.path.join(os.path.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['issegm', 'issegm.*', 'util', 'util.*']),
    package_data={'issegm': ['data_list/*/*.lst']},
    install_requires=REQUIRES,
    extras_require={
        'gpu': [MXNET_GPU],
        'test': ['pytest>=7'],
        # scripts/mutation_check.sh (mutmut 3 copies the project into mutants/)
        'dev': ['pytest>=7', 'mutmut==3.8.1'],
    },
    entry_points={'console_scripts': [
        'cbst-solve-ao=issegm.solve_AO:main',
        'cbst-solve-st=issegm.solve_ST:main',
        'cbst-evaluate=issegm.evaluate:main',
        'cbst-train-src=issegm.train_src:main',
        'cbst-demo=issegm.benchmark.demo:main',
    ]},
)
