"""otn-push command line: the human entry point to the push services."""
