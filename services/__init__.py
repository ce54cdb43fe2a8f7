"""The four otn-push services; each runs as `python -m services.<name>`."""
