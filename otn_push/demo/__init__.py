"""The demo: a generated OTN-style network, and `otn-push demo` running a push over it end to end."""
