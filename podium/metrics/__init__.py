"""Leaderboard metrics, each checked against an independent reference in tests/."""
