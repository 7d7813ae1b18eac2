"""The canonical task, its statuses and transitions, and the model catalogue.

Nothing here speaks HTTP or SQL.
"""
