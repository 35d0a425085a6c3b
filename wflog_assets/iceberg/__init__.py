"""The Iceberg side: schema and layouts, data files, commits, quarantine, maintenance, query."""
