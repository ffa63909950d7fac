"""What ``ei-keras train`` and ``reproduce`` print while training, under the backend chosen by
KERAS_BACKEND (issue #26, item 4): on a terminal, Keras' per-batch progress bar with every
metric of the logs (``task_loss`` and ``norm_loss`` among them); in a log file or pipe, one line
per epoch, which carries ``task_loss`` and ``norm_loss`` too.

Real training of a tiny run on real Fashion-MNIST, through the command's own ``main``; the
terminal is a text buffer that says it is one (``isatty``), as Keras' progress bar asks.
"""

from __future__ import annotations

import io
import sys

import pytest

from ei_keras import cli

TINY = ["--smoke", "data.train_subset=64", "data.test_subset=64", "model.width=8",
        "measures.moments=false", "measures.alignment=false"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_train_progress(terminal, tmp_path, monkeypatch, capsys):
    if terminal:
        monkeypatch.setattr(sys, "stdout", Terminal())
    rc = cli.main(["train", "--preset", "inorm_gradnorm", "--out", str(tmp_path / "run"),
                   *TINY])
    out = sys.stdout.getvalue() if terminal else capsys.readouterr().out
    assert rc == 0, out
    epoch_lines = [ln for ln in out.splitlines() if "] epoch 1/1" in ln]
    if terminal:
        # Keras' bar: redrawn in place ("\r"), steps and the dual-loss trackers.
        assert "\r" in out and "2/2" in out
        assert "task_loss:" in out and "norm_loss:" in out
        assert epoch_lines == []
    else:
        assert "\r" not in out and "task_loss:" not in out
        (line,) = epoch_lines
        assert "task_loss=" in line and "norm_loss=" in line and "accuracy=" in line
