"""Persistence: SQLAlchemy tables, keyword-only repository functions, Alembic migrations."""
