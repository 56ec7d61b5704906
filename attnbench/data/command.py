"""`python -m attnbench data <voc|cityscapes|ade20k> --root DIR`: lay out a data set."""

from __future__ import annotations

import argparse

from .ade20k import prepare_ade20k
from .cityscapes import check_cityscapes
from .download import prepare_voc


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        choices=["voc", "cityscapes", "ade20k"],
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
    fetch = {"download": not args.no_download, "base_urls": args.mirror}
    if args.dataset == "cityscapes":
        check_cityscapes(args.root)
    elif args.dataset == "ade20k":
        prepare_ade20k(args.root, **fetch)
    else:
        prepare_voc(args.root, sbd=not args.no_sbd, **fetch)
    return 0
