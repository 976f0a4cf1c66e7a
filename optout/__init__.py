"""The GP-managed opt-out registry and the gate ingestion asks."""
