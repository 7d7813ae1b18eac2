"""What an operator sees of a running process: Prometheus metrics (``metrics``, with the
upstream transport that feeds them in ``upstream``), health and readiness (``readiness``),
logs with request and task ids (``logs``, ``requests``), and the routes that serve them
(``routes``)."""
