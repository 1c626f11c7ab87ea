"""Table 5's script runs end to end (tiny settings) and writes its table, CSV and figure."""

from scripts.table5 import main, render


def test_table5_smoke(tmp_path):
    assert main(["--ops", "3", "--workers", "1,2", "--cap", "60", "--no-pruning-ops", "3",
                 "--out", str(tmp_path)]) == 0
    text = (tmp_path / "table5.txt").read_text()
    assert "max ops (ours)" in text and "paper 8 threads" in text
    assert "3 (1)" in text  # the paper's count (block inputs included) and ours
    assert (tmp_path / "table5.png").stat().st_size > 1000
    assert (tmp_path / "table5.csv").read_text().startswith("max_ops,max_block_ops,workers")


def test_capped_runs_are_reported_as_above_the_cap():
    rows = [{"max_ops": 5, "workers": 1, "pruning": True, "seconds": 9.0, "capped": False,
             "cap_s": 60}, {"max_ops": 5, "workers": 8, "pruning": False, "seconds": 60.1,
                            "capped": True, "cap_s": 60}]
    text = render(rows, [1])
    assert "9.0 s" in text and "> 60 s" in text and "768 s" in text
