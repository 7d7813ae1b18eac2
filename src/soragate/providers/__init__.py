"""Upstream providers: one small protocol (submit / status / fetch_result) and one module
per kind of upstream."""
