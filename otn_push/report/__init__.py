"""`otn-push report`: one self-contained HTML page about a push (inline SVG plots, no scripts to fetch)."""
