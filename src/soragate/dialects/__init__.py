"""Front doors. Each dialect is a package with thin routes, its schemas, and a
translator between its wire shapes and the canonical task."""
