"""The one progress bar (evaluation and training): on stderr when enabled, silent when not."""

from __future__ import annotations

from froster_edge.progress import ProgressBar


def test_an_enabled_bar_draws_on_stderr_and_keeps_stdout_for_results(capsys):
    with ProgressBar(True, "encode test", total=5) as bar:
        bar.advance(2)
        bar.update(4, description="epoch 2/3", info="loss 1.234")
        bar.print("a log line")
    out, err = capsys.readouterr()
    assert out == ""
    assert "a log line" in err and "epoch 2/3" in err and "4/5" in err and "loss 1.234" in err


def test_a_disabled_bar_draws_nothing_and_prints_log_lines_plainly(capsys):
    bar = ProgressBar(False, "train", total=5)
    bar.advance(3)
    bar.update(4, description="epoch 1/1", info="x")
    bar.print("a log line")
    bar.close()
    assert capsys.readouterr() == ("a log line\n", "")
