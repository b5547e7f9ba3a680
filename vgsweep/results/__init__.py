"""Results rebuilt from MLflow alone: one reader of runs (reader.py), study descriptions (studies.py),
and the table, figures and report built from them."""
