"""Training engine: Lightning glue, exact resume, seeding and deterministic data order."""
