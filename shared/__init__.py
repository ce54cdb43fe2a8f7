"""Code shared by the services and the CLI: settings, contracts, topology, schemas, formats."""
