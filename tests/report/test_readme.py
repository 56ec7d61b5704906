"""The README's results block is rebuilt from results/, never edited by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.report.readme import END, START, update_readme


def _experiment(root: Path) -> Path:
    exp = root / "results" / "quick"
    exp.mkdir(parents=True)
    (exp / "summary.md").write_text("# Summary\n\n| head | mIoU |\n|---|---|\n| ema | 41.2 |\n")
    for name in ("miou_vs_macs.png", "attention_maps_1.png"):
        (exp / name).write_bytes(b"\x89PNG")
    return exp


def test_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nstale table\n{END}\n\nafter\n")
    assert update_readme(readme, exp)
    text = readme.read_text()
    assert "stale table" not in text
    assert "| ema | 41.2 |" in text
    assert "\n### Summary\n" in text  # demoted under the README's own headings
    assert "![miou_vs_macs](results/quick/miou_vs_macs.png)" in text
    assert text.startswith("# title\n") and text.endswith("\nafter\n")
    assert not update_readme(readme, exp)  # a second run changes nothing


def test_missing_pieces_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    exp = _experiment(tmp_path)
    assert main(["readme", "--readme", str(readme), "--experiment", str(exp)]) == 2
    assert "expected the markers" in capsys.readouterr().err
    readme.write_text(f"{START}\n{END}\n")
    (exp / "attention_maps_1.png").unlink()
    assert main(["readme", "--readme", str(readme), "--experiment", str(exp)]) == 2
    assert "attention_maps_1.png: missing figure" in capsys.readouterr().err
    assert readme.read_text() == f"{START}\n{END}\n"


def test_a_capability_summary_shows_its_module_table_and_links_the_rest(tmp_path: Path) -> None:
    exp = tmp_path / "results" / "probes"
    exp.mkdir(parents=True)
    (exp / "summary.md").write_text(
        "# Capability table\n\n## What each module buys\n\n| probe | module |\n|---|---|\n"
        "| pairing | `isa` |\n\n## Per head\n\n| head seeds |\n\n## Per seed\n\n| seed 0 |\n\n"
        "Notes.\n\n![seeds](seeds.png)\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\n{END}\n")
    assert update_readme(readme, exp)
    text = readme.read_text()
    assert "| pairing | `isa` |" in text and "![seeds](results/probes/seeds.png)" in text
    assert "Per head" not in text.split("[summary.md]")[1] and "| seed 0 |" not in text
    assert "[summary.md](results/probes/summary.md)" in text
