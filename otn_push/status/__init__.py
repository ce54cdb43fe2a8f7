"""`otn-push status`: queues, pushes, node databases and the outbox, read once into a snapshot."""
