"""Test support shared by the test suite and bench/: real servers (weed mini, PostgreSQL,
Dagster webserver + daemon), backends, a fault proxy, and an independent reading of the source."""
