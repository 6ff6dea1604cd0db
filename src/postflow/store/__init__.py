"""Stores: where customer state lives (memory for simulate; SQL for the daemon, later)."""
