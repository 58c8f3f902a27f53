"""The data layer: tables, the engine, migrations."""
