"""`refine-n-judge view`: a read-only local web viewer over a `curate` output folder.

`index` (byte offsets of the rows, built on the fly), `item` (one row arranged for its page),
`diff` (word-level diffs), `plots` (inline SVG), `app` (the Starlette app and its templates),
`command` (the CLI entry that serves it on 127.0.0.1).
"""
