"""Results: the versioned schema, building one run's result, tables, CSV and the report."""
