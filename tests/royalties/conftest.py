"""Royalties test helpers. (Tests marked `postgres` are deselected on SQLite by tests/conftest.py.)"""
