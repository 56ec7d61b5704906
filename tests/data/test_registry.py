"""Every data set is one entry of data.SPECS, and everything that dispatches on a data set
(the config's choices, the `data` command, the checks before a run) reads that entry."""

from __future__ import annotations

import argparse
from importlib import import_module

import pytest

from attnbench.data import DATASETS, PREPARABLE, SPECS, layout_hint, missing_data
from attnbench.data.command import configure_parser
from attnbench.experiment.config import DataConfig


@pytest.mark.parametrize("name", DATASETS)
def test_each_spec_names_what_its_module_provides(name: str) -> None:
    spec = SPECS[name]
    module = import_module(f"attnbench.data.{spec.module}")
    assert module.CLASS_NAMES
    if spec.reader is None:  # generated: no files, nothing missing
        assert missing_data(DataConfig(dataset=name)) is None
        return
    for attribute in (spec.reader, "layout_help", "list_pairs"):
        assert callable(getattr(module, attribute))
    assert module.SPLITS
    where, function = spec.prepare.rsplit(".", 1)
    assert callable(getattr(import_module(f"attnbench.data.{where}"), function))
    assert "python -m attnbench data" in layout_hint(name, "ROOT")


def test_the_data_command_offers_exactly_the_data_sets_with_files() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "dataset")
    assert tuple(choices) == PREPARABLE == ("voc", "cityscapes", "ade20k")


def test_missing_data_names_the_root_and_how_to_get_it(tmp_path) -> None:
    unset = missing_data(DataConfig(dataset="ade20k"))
    assert unset is not None and unset.startswith("data.root: the ade20k dataset needs a root")
    empty = missing_data(DataConfig(dataset="cityscapes", root=str(tmp_path)))
    assert empty is not None and "data cityscapes --root" in empty
