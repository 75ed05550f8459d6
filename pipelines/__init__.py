"""Prefect flows: one per stage, and the parent `clouds` flow (full-round, loop, single stage)."""
