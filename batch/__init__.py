"""Batch scoring on Apache Beam: every row read is scored or rejected, never lost."""

# `python -m batch` reads CSV or JSON Lines files, validates each row as the HTTP
# API would (skserve.rows.to_table, by the version's input schema), scores the
# valid ones through Beam's RunInference with a model fetched by the function's
# own verified loader (skserve.loader.fetch_model), and writes predictions plus
# a dead-letter file.
