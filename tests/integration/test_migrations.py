import psycopg
import pytest

from worker.migrator import MigrationError, load_migrations, migrate


def test_migrations_create_the_original_table_and_are_idempotent(pg_url: str, unique: str) -> None:
    schema = f"m_{unique}"
    first = migrate(pg_url, schema)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert migrate(pg_url, schema) == []
    with psycopg.connect(pg_url) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'user' ORDER BY ordinal_position",
            (schema,),
        ).fetchall()
    assert columns[:4] == [
        ("id", "bigint"),
        ("username", "character varying"),
        ("createdAt", "timestamp with time zone"),
        ("fullName", "character varying"),
    ]


def test_a_changed_migration_stops_the_run(pg_url: str, unique: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    schema = f"m_{unique}"
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x int);")
    migrate(pg_url, schema, tmp_path)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x bigint);")
    with pytest.raises(MigrationError, match="changed"):
        migrate(pg_url, schema, tmp_path)
