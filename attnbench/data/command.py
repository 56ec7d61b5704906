"""`python -m attnbench data <dataset> --root DIR`: lay out a data set.

The data sets that have files are those of data.SPECS with a `prepare` entry; each
module's `prepare` does the work.
"""

from __future__ import annotations

import argparse

from . import PREPARABLE, SPECS, prepare


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        choices=PREPARABLE,
        help="voc: download and build VOC 2012 + SBD trainaug; ade20k: download and unzip "
        "ADEChallengeData2016; cityscapes: check the layout (it needs a login to download)",
    )
    parser.add_argument("--root", required=True, help="the data set's folder (created)")
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="use archives or folders already in --root; never touch the network",
    )
    parser.add_argument(
        "--no-sbd", action="store_true", help="skip SBD and the trainaug set (VOC only)"
    )
    parser.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL holding the archive files, used instead of the official sites "
        "(repeat to try several in order)",
    )


def command(args: argparse.Namespace) -> int:
    assert SPECS[args.dataset].prepare, args.dataset
    options = {"download": not args.no_download, "base_urls": args.mirror, "sbd": not args.no_sbd}
    prepare(args.dataset, args.root, **options)
    return 0
