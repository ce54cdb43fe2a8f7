"""e2e tests reuse the integration fixtures (own database, unique exchange, settings factory, RabbitMQ)."""

from tests.integration.conftest import make_settings, own_db, rabbit, test_id

__all__ = ["make_settings", "own_db", "rabbit", "test_id"]
