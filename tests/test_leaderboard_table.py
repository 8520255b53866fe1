from rich.console import Console

from podium.stages.evaluate import leaderboard_table


def render(scores) -> str:
    console = Console(width=120, record=True)
    console.print(leaderboard_table("t", scores))
    return console.export_text()


def test_four_decimals_and_per_class_breakdowns_left_out():
    text = render({"a": {"accuracy": 0.123456, "per_letter": {"a": 1.0}}, "b": {"accuracy": 0.5}})
    assert "0.1235" in text and "0.5000" in text
    assert "per_letter" not in text


def test_many_metrics_turn_the_table_sideways():
    text = render({"recon": {f"metric_{i}": i / 8 for i in range(8)}})
    lines = [line for line in text.splitlines() if "metric_" in line]
    assert len(lines) == 8 and "0.8750" in lines[-1]
